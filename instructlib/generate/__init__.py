"""Chapter 06: automatic instruction construction, one subpackage per chapter.

* ``templates`` (chapter 06): PromptSource-format templates, the bilingual bank, rendering, the linter;
* ``backtranslation`` (chapter 07): the course translator, round-trip paraphrases and their meaning
  filters, Humpback's instruction back-translation;
* ``self_instruct`` (chapter 08): the Self-Instruct loop, its prompts, instruction rewriting.

Beside them, what every chapter shares: the resumable JSONL ``stage``, the ``funnel`` that counts what
each filter keeps, the instruction ``filters`` and ROUGE-L ``dedup``, hand ``grades`` of generated
wordings, the ``wording_experiment`` that measures them all, and the ``generate`` command group (``cli``).
"""
