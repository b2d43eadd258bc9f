"""BERT is the `bert` family of `jaxqa.models.encoder`; these names stay for existing imports."""

from jaxqa.models.encoder import EncoderConfig as BertConfig
from jaxqa.models.encoder import EncoderForQuestionAnswering as BertForQuestionAnswering

__all__ = ["BertConfig", "BertForQuestionAnswering"]
