package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzEncode feeds arbitrary bytes (malformed UTF-8, control characters,
// added tokens cut in half) to the WordPiece and byte-level BPE
// tokenizers, alone and as pairs with truncation: an error is ErrInput and
// only for text that is not UTF-8; otherwise every id is in the
// vocabulary, the truncation holds, and the ids decode.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "The quick brown fox jumps over the lazy dog.", "Café!", "中文", "hello\n\nworld", "he's  <|endoftext|>[MASK]",
		"caf\xe9", "\xff\xfe", "[SEP", "<|endoftext", "\u0000\u200b\ufffd", strings.Repeat("a", 300), strings.Repeat("é ", 100)} {
		f.Add(s, "the fox")
	}
	toks := map[string]*Tokenizer{}
	for _, name := range []string{"bert_tiny.json", "gpt2_tiny.json", "roberta_tiny.json"} {
		toks[name] = load(f, name)
	}
	f.Fuzz(func(t *testing.T, text, pair string) {
		if len(text) > 4096 || len(pair) > 4096 {
			return
		}
		for name, tok := range toks {
			for _, p := range []*string{nil, &pair} {
				enc, err := tok.EncodeWith(text, p, Options{Truncation: &Truncation{MaxLength: 16, Strategy: "longest_first"}})
				valid := utf8.ValidString(text) && (p == nil || utf8.ValidString(pair))
				if err != nil {
					if !errors.Is(err, ErrInput) || valid {
						t.Fatalf("%s: %q %v: %v", name, text, p, err)
					}
					continue
				}
				if !valid {
					t.Fatalf("%s: %q: no error for text that is not UTF-8", name, text)
				}
				if enc.Len() > 16 {
					t.Fatalf("%s: %q: %d tokens, truncated to 16", name, text, enc.Len())
				}
				for _, id := range enc.IDs {
					if _, ok := tok.Token(id); !ok {
						t.Fatalf("%s: %q: id %d not in the vocabulary", name, text, id)
					}
				}
			}
			if utf8.ValidString(text) {
				enc, err := tok.Encode(text)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tok.Decode(enc.IDs, false); err != nil {
					t.Fatalf("%q: decode: %v", text, err)
				}
			}
		}
	})
}

// FuzzParse feeds arbitrary tokenizer.json files (the test files, then
// mutations) to Parse: an error is ErrFormat, never a panic, and a
// tokenizer that parses encodes, pads and decodes texts without one.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"bert_tiny.json", "gpt2_tiny.json", "roberta_tiny.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]], "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>", "byte_fallback": true, "unk_token": "a", "fuse_unk": true}}`))
	f.Add([]byte(`{"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}, {"type": "Prepend", "prepend": "▁"}]},
		"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Isolated"}, {"type": "Digits", "individual_digits": true}, {"type": "Punctuation"}, {"type": "Whitespace"}]},
		"post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "x", "type_id": 1}}], "special_tokens": {"x": {"id": "x", "ids": [0], "tokens": ["x"]}}},
		"decoder": {"type": "BPEDecoder"}, "padding": {"strategy": {"Fixed": 4}, "pad_to_multiple_of": 8, "direction": "Left"},
		"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 1, "##a": 2}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		tok, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v is not ErrFormat", err)
			}
			return
		}
		var encs []*Encoding
		for _, s := range []string{"", "a ab b", "Hello, World! 123 ▁x [SEP]", "é\u0301中\t\n"} {
			p := "ab"
			enc, err := tok.EncodeWith(s, &p, Options{Truncation: &Truncation{MaxLength: 8, Strategy: "longest_first", Left: len(s)%2 == 0}})
			if err != nil {
				if !errors.Is(err, ErrInput) {
					t.Fatalf("%q: %v", s, err)
				}
				continue
			}
			encs = append(encs, enc)
			tok.Decode(enc.IDs, len(s)%2 == 1)
		}
		Pad(encs, tok.Padding)
	})
}
