// Package tokenizer reads a HuggingFace tokenizer.json and turns text into
// token ids and back, as the tokenizers library does for the two families
// BERT-style and GPT-style models use:
//
//   - WordPiece (BERT): the BertNormalizer (control characters removed,
//     CJK characters spaced, accents stripped, lowercasing), the
//     BertPreTokenizer (whitespace and punctuation split), greedy
//     longest-match-first word pieces with the "##" continuation prefix,
//     [CLS]/[SEP] around one text or a pair of texts (cross-encoders), and
//     token type ids 0 and 1.
//   - Byte-level BPE (GPT-2, RoBERTa): the ByteLevel pre-tokenizer (GPT-2's
//     split pattern, written by hand since Go's regexp has no look-ahead,
//     and the byte-to-unicode map), merges applied lowest rank first, and
//     RoBERTa's <s> ... </s></s> ... </s> pairs.
//
// Around them: added and special tokens matched in the raw text before
// normalization, the TemplateProcessing, BertProcessing, RobertaProcessing
// and ByteLevel post-processors, truncation (longest_first, only_first,
// only_second, from the right or the left) and padding (to the batch's
// longest, to a fixed length, to a multiple) as tokenizer.json sets them or
// Options override them, and decoding (WordPiece and ByteLevel decoders).
//
// Added tokens are matched in the raw text, before normalization, also
// those marked "normalized" (which the tokenizers library matches in the
// normalized text: an uncased model's added token "hello" matches "HELLO"
// there, not here); their single_word flag is honored.
//
// Parts of tokenizer.json this package does not know (a Unigram model, a
// Split pre-tokenizer with a pattern Go's regexp cannot compile) are an
// error at Parse that names the field, never a silent difference. Input
// text must be valid UTF-8 and at most MaxTextBytes long; the work per
// text is O(n log n) in its length.
package tokenizer
