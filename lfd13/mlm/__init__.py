"""A small BERT-style masked language model, pre-trained on the course corpus.

BERT (Devlin et al., 2018) learns context-sensitive word vectors by *masked language
modelling* (MLM): hide 15 % of the tokens and predict them from both sides. This package
does that at course scale, on a CPU, one concept per module:

- :mod:`lfd13.mlm.tokenizer` — a WordPiece vocabulary (~4k) trained with ``tokenizers``;
  documents cut into blocks ``[CLS] … [SEP]``;
- :mod:`lfd13.mlm.masking` — transformers' own ``DataCollatorForLanguageModeling`` (the
  80/10/10 rule lives there; lfd13 has no masking code of its own), seeded;
- :mod:`lfd13.mlm.model` — tiny ``RoFormerForMaskedLM`` presets and their left-to-right twin,
  and the training steps;
- :mod:`lfd13.mlm.evaluate` — masked-token accuracy, the unigram baseline, fill-in-the-blank,
  the probability of a chosen word, and a difference of accuracies with an interval over documents;
- :mod:`lfd13.mlm.nsp` — next-sentence-prediction pairs, and the features a frozen encoder
  gives them (``[CLS]`` of the pair; the similarity of the two sentences);
- :mod:`lfd13.mlm.pretraining` and :mod:`lfd13.mlm.checkpoints` — the pre-training recipe, and
  a trained model as a checkpoint (:mod:`lfd13.experiments.mlm_pretraining` makes the shipped ones).

Everything is importable from ``lfd13.mlm`` directly.
"""

from lfd13.mlm.checkpoints import KIND, VOCAB_SUFFIX, build_from_checkpoint, checkpoint_config, load_trained_bert, vocab_file
from lfd13.mlm.evaluate import (
    accuracy_by_position,
    fill_mask,
    grouped_difference,
    masked_token_accuracy,
    predict_masked,
    unigram_baseline,
    word_probabilities,
)
from lfd13.mlm.masking import MaskedBatches, evaluation_batch, mask_batch, mlm_collator
from lfd13.mlm.model import PRESETS, MLMConfig, build_bert, causal_step, mlm_step
from lfd13.mlm.nsp import (
    SentencePair,
    distinct_balanced,
    encode_pair,
    nsp_labels,
    nsp_pairs,
    pair_features,
    sentence_similarity,
)
from lfd13.mlm.pretraining import (
    PretrainConfig,
    PretrainResult,
    prepare_corpus,
    pretrain,
)
from lfd13.mlm.tokenizer import (
    SPECIAL_TOKENS,
    block_documents,
    make_blocks,
    tokenizer_from_vocab,
    train_wordpiece,
    vocab_list,
)

__all__ = [
    "KIND", "PRESETS", "SPECIAL_TOKENS", "VOCAB_SUFFIX", "MLMConfig", "MaskedBatches", "PretrainConfig", "PretrainResult", "SentencePair",
    "accuracy_by_position", "block_documents", "build_bert", "build_from_checkpoint", "causal_step", "checkpoint_config", "distinct_balanced",
    "encode_pair", "evaluation_batch", "fill_mask", "grouped_difference", "load_trained_bert", "make_blocks", "mask_batch", "masked_token_accuracy",
    "mlm_collator", "mlm_step", "nsp_labels", "nsp_pairs", "pair_features", "predict_masked", "prepare_corpus", "pretrain",
    "sentence_similarity", "tokenizer_from_vocab", "train_wordpiece", "unigram_baseline", "vocab_file", "vocab_list",
    "word_probabilities",
]  # fmt: skip
