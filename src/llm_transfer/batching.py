"""Batching: length-grouped batches with dynamic padding, so little of the compute goes to padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding

MODEL_COLUMNS = ["input_ids", "attention_mask", "label"]
# the segment of each token in a sentence pair ([CLS] a [SEP] -> 0, b [SEP] -> 1): passed to the model only when a
# row has a second segment; all 0 (one sentence) is what BERT assumes when it is left out, so single sentences
# give the model exactly the batches they always did (and models without segments never see the column)
SEGMENT_COLUMN = "token_type_ids"


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffle, cut into mega-batches, sort each by length, batch, shuffle batch order: every row once an epoch.

    With group=False: the batches of `DataLoader(ds, batch_size, shuffle=True, generator=seeded)` in that epoch.
    With num_shards=N (N processes, `accelerate launch`): process `shard_index` gets its slice of every batch, so
    each optimizer step still covers batch_size rows, every process takes the same number of steps, and every row
    is seen once an epoch across the processes (a last batch of fewer than N rows joins the one before it).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, group: bool = True,
                 mega_batch_mult: int = 50, drop_last: bool = False, num_shards: int = 1, shard_index: int = 0):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.group = batch_size, seed, group
        self.mega = batch_size * mega_batch_mult
        self.drop_last = drop_last
        if not 0 <= shard_index < num_shards or batch_size < num_shards:
            raise ValueError(f"shard {shard_index} of {num_shards} with batch size {batch_size}: need "
                             "0 <= shard_index < num_shards <= batch_size (each process gets a slice of every batch)")
        self.num_shards, self.shard_index = num_shards, shard_index
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Each epoch gets its own order, fixed by (seed, epoch), so a resumed run sees the same batches."""
        self.epoch = epoch

    def _shuffled_order(self) -> np.ndarray:
        """Epoch `epoch` of `DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed))`, drawn again.

        Each pass over such a DataLoader draws one int64 from its generator (the workers' base seed), then the
        RandomSampler's permutation, then (once exhausted) a second permutation cut to zero rows; replaying those
        draws gives the very order of a plain shuffled DataLoader (tests/test_training.py checks it).
        """
        g, n = torch.Generator().manual_seed(self.seed), len(self.lengths)
        for _ in range(self.epoch + 1):
            torch.empty((), dtype=torch.int64).random_(generator=g)
            order = torch.randperm(n, generator=g)
            torch.randperm(n, generator=g)
        return order.numpy()

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.group:
            order = rng.permutation(len(self.lengths))
            chunks = [order[i:i + self.mega] for i in range(0, len(order), self.mega)]
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        else:  # plain shuffling: the same batches as a seeded, shuffled DataLoader
            order = self._shuffled_order()
        batches = [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.num_shards > 1 and len(batches) > 1 and len(batches[-1]) < self.num_shards:
            short = batches.pop()  # too few rows to give every process one: they join the batch before
            batches[-1] = batches[-1] + short
        if self.group:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.num_shards > 1:
            batches = [np.array_split(b, self.num_shards)[self.shard_index].tolist() for b in batches]
        yield from batches

    def __len__(self) -> int:
        n, rest = divmod(len(self.lengths), self.batch_size)
        if self.drop_last or rest == 0 or (self.num_shards > 1 and n > 0 and rest < self.num_shards):
            return n
        return n + 1


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of rows sorted by length (for inference: near-zero padding, order restored by the caller)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def padding_stats(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> dict[str, float]:
    """Real tokens vs tokens processed when each batch is padded to its own longest row."""
    lengths = np.asarray(lengths)
    real = int(sum(lengths[b].sum() for b in batches))
    processed = int(sum(lengths[b].max() * len(b) for b in batches))
    return {"real_tokens": real, "processed_tokens": processed, "real_fraction": real / max(processed, 1)}


def _segments(ds) -> list[str]:
    """[SEGMENT_COLUMN] when some row of a tokenized dataset has a token in segment 1 (a sentence pair), else []."""
    if SEGMENT_COLUMN not in ds.column_names or len(ds) == 0:
        return []
    import pyarrow.compute as pc

    ids = ds.with_format("arrow")[SEGMENT_COLUMN]
    top = pc.max(pc.list_flatten(ids)).as_py()
    return [SEGMENT_COLUMN] if top else []


def make_loader(ds, tokenizer, batch_size: int, seed: int = 0, group_by_length: bool = True,
                shuffle: bool = True, num_shards: int = 1, shard_index: int = 0) -> DataLoader:
    """A DataLoader over a tokenized dataset: length-grouped (or random) batches, padded per batch.

    num_shards / shard_index: this process's slice of every training batch (several processes).
    """
    ds = ds.select_columns([c for c in MODEL_COLUMNS if c in ds.column_names] + _segments(ds))
    lengths = [len(x) for x in ds["input_ids"]]
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    if shuffle:
        sampler = LengthGroupedBatchSampler(lengths, batch_size, seed=seed, group=group_by_length,
                                            num_shards=num_shards, shard_index=shard_index)
    else:
        sampler = sorted_batches(lengths, batch_size)
    # Its own generator: iterating the loader then leaves the global RNG (dropout) untouched.
    return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, generator=torch.Generator().manual_seed(seed))


def to_device(batch: dict, device: str | torch.device) -> dict:
    """Move every tensor of a batch to a device."""
    return {k: v.to(device) for k, v in batch.items()}
