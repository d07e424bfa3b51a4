"""A byte-level tokenizer with the call interface the pipelines use, written to disk and read back.

A real `CLIPTokenizer` needs vocabulary files from the Hub, so the models built in code
(engine/tiny.py) use this instead, and a folder saved from one of them
(`Model.save_pretrained`) loads it back (engine/model_files.py). The interface:
`tok(prompts, padding="max_length", max_length=77, truncation=True,
return_tensors="pt").input_ids`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["BYTE_TOKENIZER_FILE", "ByteTokenizer", "TokenizerOutput"]

BYTE_TOKENIZER_FILE = "netbend_byte_tokenizer.json"


@dataclass
class TokenizerOutput:
    input_ids: torch.Tensor  # (B, max_length) long
    attention_mask: torch.Tensor  # (B, max_length) long, 1 on real tokens


class ByteTokenizer:
    """Each UTF-8 byte is one token: `[BOS, b0, b1, …, EOS, PAD, …]`.

    Ids 0–255 are the bytes; BOS and EOS come after them unless given (the SD-Turbo
    architecture uses CLIP's 49406/49407 so its random text encoder sees CLIP's ids).
    Padding repeats EOS, as SD 1.x's tokenizer does.
    """

    def __init__(self, model_max_length: int = 77, bos_token_id: int = 256, eos_token_id: int = 257,
                 pad_token_id: int | None = None):
        self.model_max_length = model_max_length
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = eos_token_id if pad_token_id is None else pad_token_id

    @property
    def vocab_size(self) -> int:
        return max(256, self.bos_token_id + 1, self.eos_token_id + 1, self.pad_token_id + 1)

    def encode(self, text: str, max_length: int | None = None, truncation: bool = True) -> list[int]:
        ids = [self.bos_token_id, *text.encode("utf-8"), self.eos_token_id]
        if truncation and max_length is not None and len(ids) > max_length:
            ids = ids[: max_length - 1] + [self.eos_token_id]  # keep EOS: CLIP pools on it
        return ids

    def __call__(self, text: str | Sequence[str], padding: bool | str = "max_length",
                 max_length: int | None = None, truncation: bool = True,
                 return_tensors: str | None = "pt") -> TokenizerOutput:
        if return_tensors not in ("pt", None):
            raise ValueError(f"ByteTokenizer returns torch tensors only (return_tensors='pt'), got {return_tensors!r}")
        texts = [text] if isinstance(text, str) else list(text)
        max_length = self.model_max_length if max_length is None else max_length
        rows = [self.encode(t, max_length, truncation) for t in texts]
        width = max_length if padding == "max_length" else max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row[:width], dtype=torch.long)
            mask[i, : len(row)] = 1
        return TokenizerOutput(input_ids=ids, attention_mask=mask)

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        settings = {"model_max_length": self.model_max_length, "bos_token_id": self.bos_token_id,
                    "eos_token_id": self.eos_token_id, "pad_token_id": self.pad_token_id}
        (folder / BYTE_TOKENIZER_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path, subfolder: str = "") -> "ByteTokenizer":
        return cls(**json.loads((Path(folder) / subfolder / BYTE_TOKENIZER_FILE).read_text()))

    def __repr__(self) -> str:
        return (f"ByteTokenizer(model_max_length={self.model_max_length}, bos={self.bos_token_id}, "
                f"eos={self.eos_token_id}, pad={self.pad_token_id})")
