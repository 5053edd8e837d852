package tokenizer

import (
	"errors"
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
