"""The encoder families jaxqa runs, each described by what sets it apart from BERT.

All families share one post-LayerNorm Transformer encoder (`jaxqa.models.encoder`); a `Family`
names only the differences: how positions are numbered, whether token types exist, a projection
from smaller embeddings, layers shared across depth, dropouts the original omits, and the
Hugging Face names of its tensors and config keys. `weights` maps checkpoints through the same table.
"""

from __future__ import annotations

import dataclasses

# A layer's parameters by role: query/key/value (fused in jaxqa), attention output and its
# LayerNorm, the two feed-forward matmuls and their LayerNorm.
ROLES = ("query", "key", "value", "attention_out", "attention_norm", "ffn_in", "ffn_out", "ffn_norm")
_BERT_LAYER = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
               "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")


@dataclasses.dataclass(frozen=True)
class Family:
    model_type: str
    prefix: str  # the encoder's attribute in `*ForQuestionAnswering`: "bert" -> "bert.embeddings..."
    architecture: str  # the Hugging Face QA class written into an exported config.json
    layer_prefix: str = "encoder.layer.{i}."  # {i}: the distinct layer; ALBERT: {group}, {inner}
    layer_names: tuple[str, ...] = _BERT_LAYER  # per ROLES
    positions_after_padding: bool = False  # RoBERTa: position ids start at pad_token_id + 1
    token_types: bool = True
    projection: str | None = None  # checkpoint name of the embedding -> hidden projection, if any
    always_project: bool = False  # ALBERT projects even when embedding_size == hidden_size; ELECTRA does not
    shared_layers: bool = False  # ALBERT: num_hidden_groups groups reused over num_hidden_layers
    attention_output_dropout: bool = True  # dropout on the attention output before its residual
    ffn_output_dropout: bool = True
    config_keys: tuple[tuple[str, str], ...] = ()  # (Hugging Face key, jaxqa field) where they differ
    fixed: tuple[tuple[str, object], ...] = ()  # jaxqa fields the family hard-codes (no config key)

    def layer(self, index: int, inner_group_num: int = 1) -> str:
        return self.layer_prefix.format(i=index, group=index // inner_group_num, inner=index % inner_group_num)


_ROBERTA = dict(positions_after_padding=True)
FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("bert", "bert", "BertForQuestionAnswering"),
    Family("roberta", "roberta", "RobertaForQuestionAnswering", **_ROBERTA),
    Family("xlm-roberta", "roberta", "XLMRobertaForQuestionAnswering", **_ROBERTA),
    Family("electra", "electra", "ElectraForQuestionAnswering", projection="embeddings_project"),
    Family("distilbert", "distilbert", "DistilBertForQuestionAnswering", layer_prefix="transformer.layer.{i}.",
           layer_names=("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                        "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm"),
           token_types=False, attention_output_dropout=False,
           config_keys=(("dim", "hidden_size"), ("n_layers", "num_hidden_layers"), ("n_heads", "num_attention_heads"),
                        ("hidden_dim", "intermediate_size"), ("activation", "hidden_act"),
                        ("dropout", "hidden_dropout_prob"), ("attention_dropout", "attention_probs_dropout_prob"),
                        ("qa_dropout", "qa_dropout")),
           fixed=(("type_vocab_size", 0), ("layer_norm_eps", 1e-12))),
    Family("albert", "albert", "AlbertForQuestionAnswering",
           layer_prefix="encoder.albert_layer_groups.{group}.albert_layers.{inner}.",
           layer_names=("attention.query", "attention.key", "attention.value", "attention.dense",
                        "attention.LayerNorm", "ffn", "ffn_output", "full_layer_layer_norm"),
           projection="encoder.embedding_hidden_mapping_in", always_project=True, shared_layers=True, ffn_output_dropout=False),
)}
SUPPORTED = ", ".join(sorted(FAMILIES))
