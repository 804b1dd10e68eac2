"""kmq's lm-eval task definitions for the datakit eval sets (package data: YAML, plus the Python they name).

The YAML files here are lm-eval task configs. Their datasets come from ``custom_dataset`` functions in
:mod:`kmq.evaluate.task_defs.loaders`, which read the datakit folder that :func:`kmq.evaluate.tasks.task_manager`
passes as task metadata (``kmq_data_dir``), so no YAML holds a path. Metrics that lm-eval has no built-in for
(TruthfulQA mc2, code execution) are in :mod:`kmq.evaluate.task_defs.scoring`. The per-subject MMLU and per-task
BBH files are written by :mod:`kmq.evaluate.task_defs.generate` from the lists below.
"""

from __future__ import annotations

from pathlib import Path

DEFS_DIR = Path(__file__).resolve().parent

#: the 57 MMLU subjects (``category`` of ``mmlu/mmlu.jsonl``)
MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)  # fmt: skip

#: the 27 BIG-Bench Hard tasks (``category`` of ``bbh/bbh.jsonl``; one CoT prompt file each)
BBH_TASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)  # fmt: skip
