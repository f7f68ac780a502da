"""llmesr: long-tail sequential recommendation with LLM-ESR, its backbones and trustworthy evaluation."""

from llmesr.config import RunConfig
from llmesr.data.dataset import SequenceDataset, load_dataset
from llmesr.data.split import Split, leave_one_out
from llmesr.errors import ConfigError
from llmesr.evaluation import evaluate, top_k
from llmesr.models import LLMESR, BERT4Rec, GRU4Rec, SASRec, build_model, model_config
from llmesr.runs import RunFolder, prepare_data
from llmesr.training import Trainer

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "RunConfig",
    "SequenceDataset",
    "load_dataset",
    "Split",
    "leave_one_out",
    "evaluate",
    "top_k",
    "SASRec",
    "BERT4Rec",
    "GRU4Rec",
    "LLMESR",
    "build_model",
    "model_config",
    "Trainer",
    "prepare_data",
    "RunFolder",
]
