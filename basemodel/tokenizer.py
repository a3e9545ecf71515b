"""A real CLIP BPE tokenizer whose vocabulary makes every world word and reserved identifier one token."""

from __future__ import annotations

from transformers import CLIPTokenizer

from basemodel import vocab

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
# Captions are short; the text encoder's position table and the tokenizer's padding length match this.
MAX_LENGTH = 32


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP byte-level BPE uses for raw bytes."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def _word_merges(word: str) -> list[tuple[str, str]]:
    """Left-to-right merges that fold a word's characters into the single token `word</w>`."""
    symbols = [*word[:-1], word[-1] + END_OF_WORD]
    merges, prefix = [], symbols[0]
    for symbol in symbols[1:]:
        merges.append((prefix, symbol))
        prefix += symbol
    return merges


def _pieces(tokenizer: CLIPTokenizer, word: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(word, add_special_tokens=False)["input_ids"])


def _build(merges: list[tuple[str, str]]) -> CLIPTokenizer:
    alphabet = _byte_alphabet()
    tokens = alphabet + [char + END_OF_WORD for char in alphabet] + ["".join(pair) for pair in merges]
    tokens += [BOS, EOS]
    table = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=table, merges=merges, model_max_length=MAX_LENGTH)


def build_tokenizer(words: tuple[str, ...] = vocab.WORLD_WORDS + vocab.RESERVED_TOKENS) -> CLIPTokenizer:
    """The tokenizer; a word that other words' merges split is repaired by merges of lower priority."""
    merges = list(dict.fromkeys(merge for word in words for merge in _word_merges(word)))
    for _ in range(8):
        tokenizer = _build(merges)
        broken = [pieces for word in words if len(pieces := _pieces(tokenizer, word)) > 1]
        if not broken:
            return tokenizer
        # Appended merges rank below all others, so they never change a word that already folds to one token.
        for pieces in broken:
            folded = pieces[0]
            for piece in pieces[1:]:
                merges.append((folded, piece))
                folded += piece
        merges = list(dict.fromkeys(merges))
    raise RuntimeError(f"words that are not single tokens: {broken}")
