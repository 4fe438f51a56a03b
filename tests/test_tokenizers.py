import pytest
from hypothesis import given
from hypothesis import strategies as st

from textgym.tokenizers import CharTokenizer, HFTokenizer, as_tokenizer

ALPHABET = "abcxyz0123 =+\n"


@given(st.text(alphabet=ALPHABET, max_size=50))
def test_char_tokenizer_round_trips_every_string(text):
    tok = CharTokenizer(ALPHABET)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(2 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_char_tokenizer_ids_and_specials():
    tok = CharTokenizer("abc")
    assert (tok.pad_id, tok.eos_id, tok.vocab_size) == (0, 1, 5)
    assert tok.encode("cab") == [4, 2, 3]
    assert tok.decode([4, 2, 3, 1, 0]) == "cab"
    assert tok.decode([2, 1], skip_special_tokens=False) == "a<eos>"
    assert CharTokenizer.from_dict(tok.to_dict()) == tok


def test_unknown_character_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"character 'z' at position 1 of 'az' is not in the alphabet 'abc'"):
        CharTokenizer("abc").encode("az")


def test_unknown_character_maps_to_unk_when_asked():
    tok = CharTokenizer("abc", unk=True)
    assert tok.encode("az") == [tok.encode("a")[0], tok.unk_id]
    assert tok.decode(tok.encode("az")) == "a"


@pytest.mark.parametrize("alphabet,match", [("", "non-empty"), ("aba", "'a' more than once")])
def test_bad_alphabets(alphabet, match):
    with pytest.raises(ValueError, match=match):
        CharTokenizer(alphabet)


def test_decode_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match=r"token id 9 is outside the vocabulary \[0, 5\)"):
        CharTokenizer("abc").decode([9])


def _word_level():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, "the": 3, "cat": 4, "sat": 5}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def test_hf_adapter_built_locally():
    tok = as_tokenizer(_word_level())
    assert isinstance(tok, HFTokenizer)
    assert (tok.pad_id, tok.eos_id, tok.vocab_size) == (0, 1, 6)
    assert tok.encode("the cat sat") == [3, 4, 5]
    assert tok.decode([3, 4, 1, 0]) == "the cat"


def test_hf_adapter_needs_an_eos():
    hf = _word_level()
    hf.eos_token = None
    with pytest.raises(ValueError, match="has no eos token"):
        HFTokenizer(hf)


def test_as_tokenizer_rejects_other_objects():
    with pytest.raises(TypeError, match="cannot use int as a tokenizer"):
        as_tokenizer(3)
