"""Prompt-set curation (k1.5 §2.1): coverage tags, model-based difficulty, evaluability filters and
balanced selection. The stage that chains them is ``vlrl.stages.curate`` (``vlrl curate``)."""

from vlrl.curation.difficulty import ProbeCache, ProbeConfig, bucket, model_identity, probe
from vlrl.curation.filters import RuleFilterConfig, easy_to_hack, is_choice, is_proof, is_true_false, rule_reasons
from vlrl.curation.select import balanced_select, quotas
from vlrl.curation.tags import DEFAULT_DISCIPLINES, DEFAULT_DOMAINS, answer_type, rule_domain, tag_sample

__all__ = ["ProbeCache", "ProbeConfig", "bucket", "model_identity", "probe", "RuleFilterConfig", "easy_to_hack",
           "is_choice", "is_proof", "is_true_false", "rule_reasons", "balanced_select", "quotas",
           "DEFAULT_DISCIPLINES", "DEFAULT_DOMAINS", "answer_type", "rule_domain", "tag_sample"]
