"""Evaluation: lm-eval tasks, kmq's local task definitions for the datakit eval sets, judge-based tasks."""
