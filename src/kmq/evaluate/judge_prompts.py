"""Judge prompts of the judge-based tasks, and how their verdicts are read.

- ``alpaca_eval``: a pairwise prompt in the spirit of FastChat's ``pair-v2`` (the judge explains, then
  answers ``[[A]]``, ``[[B]]`` or ``[[C]]`` for a tie); :func:`pairwise_messages` builds it for one order
  of the two answers, :func:`parse_verdict` reads the last verdict.
- ``mt_bench``: single-answer grading on FastChat's 1-10 ``[[rating]]`` scale. Turn 1 without a reference
  is kmq's ``judge:`` scorer prompt itself (FastChat ``single-v1``, :func:`kmq.scorers.judge.judge_messages`);
  turn 1 with a reference answer, and turn 2 (the whole conversation, judged on the second answer) with or
  without references, are kmq's own text in the style of FastChat's ``single-math-v1`` and
  ``single-v1-multi-turn``. Ratings are read by :func:`kmq.scorers.judge.parse_rating`.

:data:`PROMPTS_DIGEST` fingerprints every template; results record it, so a changed prompt shows.
"""

from __future__ import annotations

import re

from kmq.cache import digest
from kmq.scorers.judge import PROMPT_TEMPLATE, SYSTEM_PROMPT, judge_messages

Messages = list[dict[str, str]]

PAIR_SYSTEM = (
    "You are an impartial judge of AI assistants. You will see a user instruction and the answers of two "
    "assistants, A and B. Decide which answer follows the instruction better and serves the user better, "
    "weighing helpfulness, relevance, accuracy, depth, creativity and level of detail. Start with a short "
    "comparison of the two answers. The order in which they are shown must not sway you, a longer answer is "
    "not better for its length alone, and the assistants' names do not matter. Be as objective as you can. "
    'After your comparison, give your verdict in exactly this format: "[[A]]" if answer A is better, '
    '"[[B]]" if answer B is better, or "[[C]]" for a tie.'
)
PAIR_TEMPLATE = (
    "[User Instruction]\n{question}\n\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")

REFERENCE_TEMPLATE = (
    "[Instruction]\nPlease act as an impartial judge and rate the response of an AI assistant to the user "
    "question below. Judge it on correctness first, then on helpfulness. A reference answer is given: compare "
    "the assistant's answer with it, point out and correct any mistakes, and be as objective as you can. After "
    'your explanation, rate the response on a scale of 1 to 10 in exactly this format: "[[rating]]", for '
    'example: "Rating: [[5]]".\n\n[Question]\n{question}\n\n'
    "[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
MULTI_SYSTEM = (
    "Please act as an impartial judge and rate the response of an AI assistant in the conversation with a "
    "user shown below. Rate only the assistant's answer to the second user question; the first exchange is "
    "its context. Consider helpfulness, relevance, accuracy, depth, creativity and level of detail, and "
    "whether the answer follows up correctly on the first exchange. Begin with a short explanation and be as "
    'objective as you can. Then rate the answer on a scale of 1 to 10 in exactly this format: "[[rating]]", '
    'for example: "Rating: [[5]]".'
)
MULTI_REFERENCE_SYSTEM = (
    "Please act as an impartial judge and rate the response of an AI assistant in the conversation with a "
    "user shown below. Rate only the assistant's answer to the second user question; the first exchange is "
    "its context. Judge it on correctness first, then on helpfulness. Reference answers to both questions are "
    "given: compare the assistant's second answer with the second reference answer, point out and correct any "
    'mistakes, and be as objective as you can. Then rate the answer on a scale of 1 to 10 in exactly this format: '
    '"[[rating]]", for example: "Rating: [[5]]".'
)
CONVERSATION_TEMPLATE = (
    "<|The Start of the Assistant's Conversation with the User|>\n\n### User:\n{question_1}\n\n### Assistant:\n"
    "{answer_1}\n\n### User:\n{question_2}\n\n### Assistant:\n{answer_2}\n\n"
    "<|The End of the Assistant's Conversation with the User|>"
)
REFERENCES_TEMPLATE = (
    "<|The Start of Reference Answers|>\n\n### User:\n{question_1}\n\n### Reference answer:\n{reference_1}\n\n"
    "### User:\n{question_2}\n\n### Reference answer:\n{reference_2}\n\n<|The End of Reference Answers|>\n\n"
)

#: the fingerprint of every judge template above (recorded in the results' settings)
PROMPTS_DIGEST = digest(
    "judged-prompts-v1", SYSTEM_PROMPT, PROMPT_TEMPLATE, PAIR_SYSTEM, PAIR_TEMPLATE, REFERENCE_TEMPLATE,
    MULTI_SYSTEM, MULTI_REFERENCE_SYSTEM, CONVERSATION_TEMPLATE, REFERENCES_TEMPLATE,
)  # fmt: skip


def pairwise_messages(question: str, answer_a: str, answer_b: str) -> Messages:
    """The chat request asking which of two answers (shown as A, then B) is better."""
    prompt = PAIR_TEMPLATE.format(question=question, answer_a=answer_a, answer_b=answer_b)
    return [{"role": "system", "content": PAIR_SYSTEM}, {"role": "user", "content": prompt}]


def parse_verdict(text: str) -> str | None:
    """The last ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie) in the judge's answer, or None.

    Examples
    --------
    >>> parse_verdict("B misses the point. [[A]]"), parse_verdict("Verdict: A"), parse_verdict("[[B]] ... [[C]]")
    ('A', None, 'C')
    """
    found = VERDICT.findall(text or "")
    return found[-1] if found else None


def single_messages(questions: list[str], answers: list[str], references: list[str] | None) -> Messages:
    """The chat request rating the assistant's answer to the last of ``questions`` (turn 1 or turn 2).

    ``references`` (one per question) switches to the reference-guided prompt.
    """
    if len(questions) == 1:
        if references is None:
            return judge_messages([{"role": "user", "content": questions[0]},
                                   {"role": "assistant", "content": answers[0]}])  # fmt: skip
        prompt = REFERENCE_TEMPLATE.format(question=questions[0], reference=references[0], answer=answers[0])
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
    fields = {"question_1": questions[0], "answer_1": answers[0], "question_2": questions[1], "answer_2": answers[1]}
    prompt = CONVERSATION_TEMPLATE.format(**fields)
    if references is None:
        return [{"role": "system", "content": MULTI_SYSTEM}, {"role": "user", "content": prompt}]
    refs = REFERENCES_TEMPLATE.format(reference_1=references[0], reference_2=references[1], **fields)
    return [{"role": "system", "content": MULTI_REFERENCE_SYSTEM}, {"role": "user", "content": refs + prompt}]
