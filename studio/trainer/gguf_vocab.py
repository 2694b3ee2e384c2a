"""A Hugging Face tokenizer as llama.cpp's vocabulary: which of llama.cpp's tokenizers it is, every token with
its type (and score), the rows the embedding has beyond the tokenizer, and whether BOS and EOS are added.

Two kinds are written, as llama.cpp's own converter writes them (`convert_hf_to_gguf.py`):
- "gpt2": byte-level BPE (Llama 3, Qwen2/2.5/3, and studio's own tokenizers), with its merges and the
  pre-tokenizer's name;
- "llama": SentencePiece BPE with byte fallback (Llama 2, Mistral v0.1/v0.3, CodeLlama), as its
  tokenizer.json holds it: llama.cpp merges the pair whose token scores highest, so each token's score is
  minus the rank of the merge that makes it, which is the order Hugging Face's BPE merges in.
Anything else (Unigram, WordPiece, a tokenizer without tokenizer.json) is refused before any work is done.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class VocabError(Exception):
    """A tokenizer llama.cpp's vocabulary cannot hold as it is; the message says what to do."""


@dataclass(frozen=True)
class Vocabulary:
    model: str                 # llama.cpp's tokenizer: "gpt2" or "llama"
    pre: str | None            # the pre-tokenizer's name ("gpt2" kind only)
    tokens: list[bytes]        # one per embedding row, padding included
    types: list[int]           # gguf.TokenType values
    scores: list[float] | None
    merges: list[str]
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool | None  # "llama" kind: a space before text that follows a special token
    padded: int                # rows the tokenizer has no token for, named [PAD{i}]


BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def tokenizer_json(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VocabError(f"{folder} has no tokenizer.json (a fast tokenizer): GGUF export reads the vocabulary "
                         "from it. Save the tokenizer with transformers (AutoTokenizer.from_pretrained(...)"
                         ".save_pretrained(...)) into the model folder, or export the merged model (--merge) and "
                         "convert it with llama.cpp's convert_hf_to_gguf.py") from None
    except (OSError, ValueError) as e:
        raise VocabError(f"{path} cannot be read ({e}); export the merged model (--merge) instead") from None


def tokenizer_kind(folder: Path) -> str:
    """'gpt2' or 'llama' for the tokenizer in `folder`; VocabError for one llama.cpp's writer here cannot hold."""
    data = tokenizer_json(folder)
    model = data.get("model") or {}
    decoder = data.get("decoder") or {}
    decoders = [d.get("type") for d in decoder.get("decoders", [decoder])] if decoder else []
    if model.get("type") == "BPE" and not model.get("byte_fallback") and "ByteLevel" in decoders:
        return "gpt2"
    if model.get("type") == "BPE" and model.get("byte_fallback") and "ByteFallback" in decoders:
        return "llama"
    kind = model.get("type") or "unknown"
    raise VocabError(f"the tokenizer is {kind}{' with byte fallback' if model.get('byte_fallback') else ''}, "
                     "and GGUF export here writes byte-level BPE (Llama 3, Qwen) and SentencePiece BPE (Llama 2, "
                     "Mistral) vocabularies. Export the merged model (--merge) and convert it with llama.cpp's "
                     "convert_hf_to_gguf.py")


def pre_tokenizer(data: dict[str, Any], family_pre: str) -> str:
    """llama.cpp's name for how text is split before BPE: GPT-2's own split when the tokenizer uses plain
    byte-level splitting (as studio's built-in tokenizers do), else the family's."""
    pre = data.get("pre_tokenizer") or {}
    return "gpt-2" if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) else family_pre


def merge_list(data: dict[str, Any]) -> list[str]:
    """The merges as llama.cpp stores them ('a b'; a space inside a token written as U+0120's neighbour,
    as the gguf package does)."""
    merges = (data.get("model") or {}).get("merges") or []
    out = []
    for merge in merges:
        pair = merge.split(" ", 1) if isinstance(merge, str) else merge
        out.append(" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair))
    return out


def merge_scores(data: dict[str, Any], vocab: dict[str, int]) -> dict[int, float]:
    """Each token made by a merge scores minus that merge's rank (the first merge making it counts)."""
    scores: dict[int, float] = {}
    for rank, merge in enumerate((data.get("model") or {}).get("merges") or []):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        token = vocab.get(left + right)
        if token is not None and token not in scores:
            scores[token] = -float(rank)
    return scores


def space_prefix(data: dict[str, Any]) -> bool:
    """Whether llama.cpp puts '▁' before every piece of text that follows a special token. Hugging Face's
    Metaspace does that with prepend_scheme "always" (the legacy SentencePiece behaviour); with "first" it
    adds one at the very start only, so a chat prompt, which starts with a special token, gets none."""
    pre = data.get("pre_tokenizer") or {}
    for part in pre.get("pretokenizers", [pre]):
        if part.get("type") == "Metaspace":
            return part.get("prepend_scheme", "always" if part.get("add_prefix_space", True) else "never") == "always"
    normalizer = data.get("normalizer") or {}
    return any(n.get("type") == "Prepend" for n in normalizer.get("normalizers", [normalizer]))


def adds_bos_eos(tokenizer: Any) -> tuple[bool, bool]:
    """Whether the tokenizer puts BOS before and EOS after plain text, as Hugging Face encodes it: llama.cpp
    must do the same, or every prompt it tokenizes starts differently from the ones the model was trained on."""
    ids = tokenizer("a")["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return (bos is not None and bool(ids) and ids[0] == bos,
            eos is not None and len(ids) > 1 and ids[-1] == eos)


def build_vocabulary(folder: Path, tokenizer: Any, rows: int, family_pre: str) -> Vocabulary:
    """The vocabulary of the tokenizer in `folder` for a model whose embedding has `rows` rows."""
    import gguf

    kind = tokenizer_kind(folder)
    data = tokenizer_json(folder)
    vocab = tokenizer.get_vocab()
    if len(vocab) > rows:
        beyond = sorted((i, t) for t, i in vocab.items() if i >= rows)
        named = ", ".join(f"{t!r} ({i})" for i, t in beyond[:3]) + (" ..." if len(beyond) > 3 else "")
        raise VocabError(f"the tokenizer has {len(vocab)} tokens but the model's embedding has {rows} rows: "
                         f"{named} {'has' if len(beyond) == 1 else 'have'} no embedding, so llama.cpp cannot load "
                         "the file. Resize the embedding to the tokenizer (model.resize_token_embeddings("
                         "len(tokenizer))) before training, or drop the tokens the model never had")
    by_id = {i: t for t, i in vocab.items()}
    missing = [i for i in range(len(vocab)) if i not in by_id]
    if missing:
        raise VocabError(f"the tokenizer's ids are not contiguous (no token has id {missing[0]}); llama.cpp needs "
                         "one token per id. Export the merged model (--merge) instead")
    added = tokenizer.added_tokens_decoder
    special = set(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}
    tokens: list[bytes] = []
    types: list[int] = []
    for i in range(len(vocab)):
        text = by_id[i]
        if i in special:
            kind_of = gguf.TokenType.UNKNOWN if text == tokenizer.unk_token else gguf.TokenType.CONTROL
        elif i in added:
            kind_of = gguf.TokenType.USER_DEFINED
        elif kind == "llama" and BYTE_TOKEN.fullmatch(text):
            kind_of = gguf.TokenType.BYTE
        else:
            kind_of = gguf.TokenType.NORMAL
        tokens.append(text.encode("utf-8"))
        types.append(int(kind_of))
    padded = rows - len(tokens)
    for i in range(padded):  # llama.cpp's converter names a padded embedding's rows the same way
        tokens.append(f"[PAD{len(vocab) + i}]".encode())
        types.append(int(gguf.TokenType.UNUSED))
    scores = None
    if kind == "llama":
        from_merges = merge_scores(data, vocab)
        scores = [from_merges.get(i, 0.0 if types[i] == gguf.TokenType.NORMAL else -1000.0)
                  for i in range(len(vocab))] + [-1000.0] * padded
    add_bos, add_eos = adds_bos_eos(tokenizer)
    return Vocabulary(model=kind, pre=pre_tokenizer(data, family_pre) if kind == "gpt2" else None, tokens=tokens,
                      types=types, scores=scores, merges=merge_list(data) if kind == "gpt2" else [],
                      add_bos=add_bos, add_eos=add_eos, padded=padded,
                      add_space_prefix=space_prefix(data) if kind == "llama" else None)


def add_to_gguf(writer: Any, vocabulary: Vocabulary, tokenizer: Any) -> None:
    """The vocabulary, the special tokens' ids and the chat template, into the GGUF writer."""
    writer.add_tokenizer_model(vocabulary.model)
    if vocabulary.pre:
        writer.add_tokenizer_pre(vocabulary.pre)
    writer.add_token_list(vocabulary.tokens)
    writer.add_token_types(vocabulary.types)
    if vocabulary.scores is not None:
        writer.add_token_scores(vocabulary.scores)
    if vocabulary.merges:
        writer.add_token_merges(vocabulary.merges)
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
           "pad": tokenizer.pad_token_id}
    for name, token_id in ids.items():
        if isinstance(token_id, int) and 0 <= token_id < len(vocabulary.tokens):
            getattr(writer, f"add_{name}_token_id")(token_id)
    if vocabulary.add_space_prefix is not None:
        writer.add_add_space_prefix(vocabulary.add_space_prefix)
    writer.add_add_bos_token(vocabulary.add_bos)
    writer.add_add_eos_token(vocabulary.add_eos)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
