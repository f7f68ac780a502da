"""Data: readers for the supported formats, id remapping, splits, batching and head/tail groups."""

from llmesr.data.batching import epoch_batches
from llmesr.data.dataset import SequenceDataset, build_dataset, kcore_filter, load_dataset, resolve_data_path
from llmesr.data.formats import DataFormatError, InteractionLog, read_dataset
from llmesr.data.groups import HeadTailGroups, groups_from_preset, head_tail_groups
from llmesr.data.sequences import Sequences
from llmesr.data.split import EvalSplit, Split, global_time, leave_one_out, make_split

__all__ = [
    "DataFormatError",
    "InteractionLog",
    "read_dataset",
    "SequenceDataset",
    "build_dataset",
    "kcore_filter",
    "load_dataset",
    "resolve_data_path",
    "Sequences",
    "EvalSplit",
    "Split",
    "global_time",
    "leave_one_out",
    "make_split",
    "epoch_batches",
    "HeadTailGroups",
    "groups_from_preset",
    "head_tail_groups",
]
