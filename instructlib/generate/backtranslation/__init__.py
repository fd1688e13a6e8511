"""Chapter 07: back-translation — the course translator (``translator``), round-trip paraphrases
(``roundtrip``) kept by meaning filters (``meaning_filters``) into training data (``paraphrase_data``),
and Humpback's output-to-instruction model with self-curation (``backward``)."""
