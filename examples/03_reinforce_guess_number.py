"""Lesson 3: REINFORCE learns binary search from rewards alone.

REINFORCE pushes up the log-probability of every action by how much better its return-to-go was
than a baseline. Here the baseline is leave-one-out (RLOO): four envs play the same secret, and
each one's baseline is the mean return of the other three. The policy is textgym's transformer
reading the history of guesses (see textgym/agents/rollout.py, SequenceView).

The env pays information (`shaping=True`): each guess earns how much it narrowed the interval of
possible secrets. A won game returns the same as without shaping, so the best policy is still
binary search, but every guess now carries a learning signal.

    python examples/03_reinforce_guess_number.py                 # about 3 minutes on a 2-core CPU
    python examples/03_reinforce_guess_number.py --steps 300000  # a quick look: about 30 s of CPU, success
                                                                 # climbs from about 12% (random) to 25%
"""

import argparse

from textgym.agents import reinforce


def main(steps: int = 3_000_000, num_envs: int = 256, seed: int = 0) -> dict:
    cfg = reinforce.ReinforceConfig(
        env_id="textgym/GuessNumber-v0",
        env_kwargs={"shaping": True},
        num_envs=num_envs,
        total_steps=steps,
        learning_rate=1e-3,
        baseline="rloo",
        rloo_k=4,
        update_epochs=1,  # the textbook's REINFORCE: one gradient step per batch (the default
        num_minibatches=1,  # takes 4 epochs of 4 clipped minibatch steps, as TRL's RLOO does)
        norm_adv=False,
        seed=seed,
    )
    result = reinforce.train(cfg)

    # The learning curve, a few points of it.
    for h in result.history[:: max(1, len(result.history) // 8)]:
        print(f"steps {h['env_steps']:>9,}  mean return {h['mean_return']:+.3f}  success {h['success_rate']:.1%}")
    ev = result.eval
    print(f"\ngreedy play over {ev['episodes']:.0f} games: success {ev['success_rate']:.1%}, "
          f"mean guesses {ev['mean_guesses']:.2f} (binary search: 5.80, random: about 9.7)")
    return ev


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3_000_000)
    parser.add_argument("--num-envs", type=int, default=256)
    args = parser.parse_args()
    main(args.steps, args.num_envs)
