"""The batch contract shared by the data pipeline, the models and the trainer.

A batch is a dict of tensors, one row per sample:

- ``user``, ``item``, ``category``: int64 (B,), contiguous ids; 0 (``PAD_ID``) is padding only,
  1 (``OOV_ID``) the out-of-vocabulary id that rare and unseen raw ids share (a trained row), and
  known ids start at 2 (``FIRST_ID``).
- ``hist_items``, ``hist_cats``: int64 (B, L), the user's clicked items (and their categories)
  strictly before the sample's time, oldest first, the most recent L kept, **right-padded** with 0:
  positions ``0 .. hist_len-1`` are valid, the rest are padding. Right padding keeps causal
  sequence models exact: a valid position never sees a padded one.
- ``hist_len``: int64 (B,), number of valid history positions (0 for an empty history).
- ``label``: float32 (B,), 1 for a click, 0 for a sampled negative.
- ``timestamp``: int64 (B,), Unix seconds of the sample (data side only; models ignore it).

Models are called as ``model(**{k: batch[k] for k in FEATURE_KEYS})``.
"""

from dataclasses import dataclass

FEATURE_KEYS = ("user", "item", "category", "hist_items", "hist_cats", "hist_len")
LABEL_KEY = "label"
PAD_ID = 0
OOV_ID = 1
FIRST_ID = 2


@dataclass(frozen=True)
class DatasetMeta:
    """Vocabulary sizes (table sizes, the padding and out-of-vocabulary rows included) and the history
    length."""

    num_users: int
    num_items: int
    num_categories: int
    max_len: int = 50
