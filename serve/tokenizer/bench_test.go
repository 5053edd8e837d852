package tokenizer

import (
	"os"
	"strings"
	"testing"
)

// benchText is about 1 KiB of English with punctuation, accents and
// numbers.
var benchText = strings.Repeat("The quick brown fox jumps over the lazy dog; naïve café owners' résumés, 1,234 items! ", 12)

// BenchmarkEncode tokenizes benchText with the hand-worked tokenizers and,
// when KILN_TOKENIZER_REFS is set (see TestReferenceTokenizers), with
// bert-base-uncased's and GPT-2's real vocabularies.
func BenchmarkEncode(b *testing.B) {
	toks := map[string]*Tokenizer{"bert_tiny": load(b, "bert_tiny.json"), "gpt2_tiny": load(b, "gpt2_tiny.json")}
	if dir := os.Getenv("KILN_TOKENIZER_REFS"); dir != "" {
		var err error
		if toks["bert_base_uncased"], err = Parse(bertJSON(b, dir)); err != nil {
			b.Fatal(err)
		}
		if toks["gpt2"], err = Parse(gpt2JSON(b, dir)); err != nil {
			b.Fatal(err)
		}
	}
	for name, tok := range toks {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(benchText)))
			for b.Loop() {
				if _, err := tok.Encode(benchText); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
