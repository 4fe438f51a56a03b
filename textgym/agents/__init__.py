"""Agents that act in textgym envs."""

from textgym.agents.scripted import scripted_policy

__all__ = ["scripted_policy"]
