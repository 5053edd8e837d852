package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/serve/tokenizer"
	"github.com/kilnai/kiln/tensor"
)

// Passages is the bundled corpus, one passage a line.
//
//go:embed passages.txt
var Passages string

// Dim is the width of the embeddings (BERT-base's).
const Dim = 768

// corpus returns the passages.
func corpus() []string {
	return strings.Split(strings.TrimSpace(Passages), "\n")
}

// stopwords weigh little in both models.
var stopwords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a an the of in on at to for from by with and or but as is are was were be been it its
		this that these those what which who whom why when where how do does did can could so than then there their
		they them his her he she we you your our not no into over under about after before while because some most`) {
		stopwords[w] = true
	}
}

// Weights of the tokens that are not content words.
const (
	stopWeight  = 0.02
	pieceWeight = 0.03
)

// stem splits a lowercase word into a stem and a suffix piece ("bees" ->
// "bee", "##s"), or returns it whole with suffix "".
func stem(w string) (string, string) {
	for _, s := range []struct {
		suffix string
		min    int
		ok     func(stem string) bool
	}{
		{"ing", 4, nil},
		{"ed", 4, nil},
		{"es", 3, func(st string) bool {
			return strings.HasSuffix(st, "s") || strings.HasSuffix(st, "x") || strings.HasSuffix(st, "ch") || strings.HasSuffix(st, "sh") || strings.HasSuffix(st, "o")
		}},
		{"ly", 4, nil},
		{"s", 3, func(st string) bool { return !strings.HasSuffix(st, "s") }},
	} {
		st, ok := strings.CutSuffix(w, s.suffix)
		if ok && len(st) >= s.min && (s.ok == nil || s.ok(st)) {
			return st, "##" + s.suffix
		}
	}
	return w, ""
}

// words splits text as BERT's pre-tokenizer would after lowercasing and
// stripping accents: runs of letters and digits, and each other
// character alone.
func words(text string) []string {
	text = strings.ToLower(norm.NFD.String(text))
	var out []string
	start := -1
	for i, r := range text {
		switch {
		case unicode.Is(unicode.Mn, r):
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if start < 0 {
				start = i
			}
			continue
		default:
			if start >= 0 {
				out = append(out, text[start:i])
				start = -1
			}
			if !unicode.IsSpace(r) {
				out = append(out, string(r))
			}
		}
	}
	if start >= 0 {
		out = append(out, text[start:])
	}
	return out
}

// Vocabulary is the example's WordPiece vocabulary: BERT's special tokens,
// the letters, digits, ASCII punctuation and every other character of the
// corpus alone and as a continuation piece (so any word of those
// characters tokenizes), suffix pieces, and the stems of the
// corpus's words (so "volcanoes" is volcano ##es and matches "volcano").
func Vocabulary(passages []string) []string {
	vocab := []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
	seen := map[string]bool{}
	add := func(tok string) {
		if !seen[tok] {
			seen[tok] = true
			vocab = append(vocab, tok)
		}
	}
	var chars []string
	for c := 'a'; c <= 'z'; c++ {
		chars = append(chars, string(c))
	}
	for c := '0'; c <= '9'; c++ {
		chars = append(chars, string(c))
	}
	for _, c := range "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" {
		chars = append(chars, string(c))
	}
	var stems, suffixes []string
	for _, p := range passages {
		for _, w := range words(p) {
			for _, r := range w {
				chars = append(chars, string(r))
			}
			st, suf := stem(w)
			stems = append(stems, st)
			if suf != "" {
				suffixes = append(suffixes, suf)
			}
		}
	}
	slices.Sort(chars)
	for _, c := range slices.Compact(chars) {
		add(c)
	}
	for _, c := range slices.Compact(chars) {
		add("##" + c)
	}
	slices.Sort(suffixes)
	for _, s := range slices.Compact(suffixes) {
		add(s)
	}
	slices.Sort(stems)
	for _, s := range slices.Compact(stems) {
		add(s)
	}
	return vocab
}

// TokenizerJSON is the example's tokenizer.json: BERT's normalizer,
// pre-tokenizer, WordPiece model and [CLS]/[SEP] post-processor over
// Vocabulary.
func TokenizerJSON(passages []string) ([]byte, error) {
	vocab := map[string]int{}
	var added []map[string]any
	for i, tok := range Vocabulary(passages) {
		vocab[tok] = i
		if i < 5 {
			added = append(added, map[string]any{"id": i, "content": tok, "single_word": false, "lstrip": false,
				"rstrip": false, "normalized": false, "special": true})
		}
	}
	return json.MarshalIndent(map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   added,
		"normalizer":     map[string]any{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": nil, "lowercase": true},
		"pre_tokenizer":  map[string]any{"type": "BertPreTokenizer"},
		"post_processor": map[string]any{"type": "BertProcessing", "sep": []any{"[SEP]", 3}, "cls": []any{"[CLS]", 2}},
		"decoder":        map[string]any{"type": "WordPiece", "prefix": "##", "cleanup": true},
		"model": map[string]any{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
			"max_input_chars_per_word": 100, "vocab": vocab},
	}, "", " ")
}

// tokenWeights gives each token of the vocabulary its weight: 0 for the
// special tokens, little for stopwords, characters and suffix pieces, and
// for the stems their inverse document frequency over the passages
// (tokenized by tok): ln((N+1)/(df+1)) + 1.
func tokenWeights(tok *tokenizer.Tokenizer, passages []string) ([]float32, error) {
	df := make([]int, tok.VocabSize())
	for _, p := range passages {
		enc, err := tok.Encode(p)
		if err != nil {
			return nil, err
		}
		seen := map[int64]bool{}
		for _, id := range enc.IDs {
			if !seen[id] {
				seen[id] = true
				df[id]++
			}
		}
	}
	w := make([]float32, tok.VocabSize())
	n := float64(len(passages))
	for id := range w {
		s, _ := tok.Token(int64(id))
		switch {
		case id < 5:
			w[id] = 0
		case stopwords[s]:
			w[id] = stopWeight
		case strings.HasPrefix(s, "##") || len([]rune(s)) == 1:
			w[id] = pieceWeight
		default:
			w[id] = float32(math.Log((n+1)/float64(df[id]+1)) + 1)
		}
	}
	return w, nil
}

// Embedder builds the embedding model: input_ids and attention_mask
// [batch, seq] in, sentence_embedding [batch, Dim] out, the L2-normalized
// masked mean of the rows of a token embedding table (Gather, masked
// ReduceSum, Div). Each token's row is the unit vector of its own column
// scaled by its weight, so the cosine of two texts is the TF-IDF cosine of
// their token counts: shared content words give a high cosine, shared
// stopwords and pieces almost none, and nothing else adds noise. It needs
// one column per token: at most Dim tokens (BERT-base's width, room for
// the vocabulary of the bundled passages).
func Embedder(weights []float32) (*ir.Graph, error) {
	if len(weights) > Dim {
		return nil, fmt.Errorf("embedder: %d tokens in the vocabulary, at most %d (one column each)", len(weights), Dim)
	}
	table := tensor.New(tensor.Float32, len(weights), Dim)
	t := table.Float32s()
	for id, w := range weights {
		t[id*Dim+id] = w
	}
	b := ir.NewBuilder("embedder", 17)
	ids := b.Input("input_ids", tensor.Int64, ir.S("batch"), ir.S("seq"))
	mask := b.Input("attention_mask", tensor.Int64, ir.S("batch"), ir.S("seq"))
	axes := func(a ...int64) *ir.Value { return b.Const("", tensor.FromInt64(a, len(a))) }
	emb := b.Op("Gather", []*ir.Value{b.Const("embeddings.word_embeddings", table), ids})
	m := b.Op("Cast", []*ir.Value{mask}, ir.IntAttr("to", int64(tensor.Float32)))
	m3 := b.Op("Unsqueeze", []*ir.Value{m, axes(2)})
	sum := b.Op("ReduceSum", []*ir.Value{b.Op("Mul", []*ir.Value{emb, m3}), axes(1)}, ir.IntAttr("keepdims", 0))
	count := b.Op("ReduceSum", []*ir.Value{m, axes(1)}, ir.IntAttr("keepdims", 1))
	one := b.Const("", tensor.FromFloat32([]float32{1}, 1))
	mean := b.Op("Div", []*ir.Value{sum, b.Op("Max", []*ir.Value{count, one})})
	sq := b.Op("ReduceSum", []*ir.Value{b.Op("Mul", []*ir.Value{mean, mean}), axes(1)}, ir.IntAttr("keepdims", 1))
	eps := b.Const("", tensor.FromFloat32([]float32{1e-12}, 1))
	out := b.Op("Div", []*ir.Value{mean, b.Op("Sqrt", []*ir.Value{b.Op("Max", []*ir.Value{sq, eps})})})
	b.Output(out, "sentence_embedding")
	out.Type = ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(Dim)}}
	return b.Graph(), nil
}

// Retriever builds the retrieval model: sentence_embedding [batch, width]
// in, scores [batch, passages] out, the cosine of the query with each
// passage (one MatMul with the passages' embeddings, an initializer).
// The top passages are the server's top-k of scores (the classification
// extension, labels from the passages file).
func Retriever(passageEmbeddings *tensor.Tensor) (*ir.Graph, error) {
	n, dim := passageEmbeddings.Shape[0], passageEmbeddings.Shape[1]
	// transpose to [dim, n]
	tt := tensor.New(tensor.Float32, dim, n)
	src, dst := passageEmbeddings.Float32s(), tt.Float32s()
	for i := range n {
		for d := range dim {
			dst[d*n+i] = src[i*dim+d]
		}
	}
	b := ir.NewBuilder("retriever", 17)
	q := b.Input("sentence_embedding", tensor.Float32, ir.S("batch"), ir.D(int64(dim)))
	out := b.Op("MatMul", []*ir.Value{q, b.Const("passage_embeddings", tt)})
	b.Output(out, "scores")
	out.Type = ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(int64(n))}}
	return b.Graph(), nil
}

// Reranker builds the cross-encoder: a query and a passage tokenized
// together as BERT pairs are ([CLS] query [SEP] passage [SEP], token
// types 0 then 1), input_ids, attention_mask, token_type_ids [batch, seq]
// in, logits [batch, 1] out. It is lexical, not learned: an Equal over
// every pair of positions finds the query's tokens in the passage, and
// the logit is
//
//	4 * coverage + 2 * phrase + focus - 3
//
// with coverage the weighted share of the query's tokens found in the
// passage (not diluted by a long passage, as a cosine is), phrase the
// weighted share of the query's adjacent token pairs found adjacent in
// the passage (word order, which a bag of words cannot see), and focus
// the weighted share of the passage's tokens that are in the query (of
// two passages with the same words of the query, the one about less
// else).
func Reranker(weights []float32) *ir.Graph {
	b := ir.NewBuilder("reranker", 17)
	ids := b.Input("input_ids", tensor.Int64, ir.S("batch"), ir.S("seq"))
	mask := b.Input("attention_mask", tensor.Int64, ir.S("batch"), ir.S("seq"))
	types := b.Input("token_type_ids", tensor.Int64, ir.S("batch"), ir.S("seq"))
	i64 := func(a ...int64) *ir.Value { return b.Const("", tensor.FromInt64(a, len(a))) }
	f32 := func(v float32) *ir.Value { return b.Const("", tensor.FromFloat32([]float32{v}, 1)) }
	toF := func(v *ir.Value) *ir.Value {
		return b.Op("Cast", []*ir.Value{v}, ir.IntAttr("to", int64(tensor.Float32)))
	}
	wt := tensor.FromFloat32(slices.Clone(weights), len(weights))
	w := b.Op("Gather", []*ir.Value{b.Const("token_weights", wt), ids}) // [b,s]
	m, t := toF(mask), toF(types)
	qw := b.Op("Mul", []*ir.Value{b.Op("Mul", []*ir.Value{w, m}), b.Op("Sub", []*ir.Value{f32(1), t})}) // query tokens' weights
	p := b.Op("Mul", []*ir.Value{m, t})                                                                 // passage positions
	eq := toF(b.Op("Equal", []*ir.Value{b.Op("Unsqueeze", []*ir.Value{ids, i64(2)}), b.Op("Unsqueeze", []*ir.Value{ids, i64(1)})}))
	// coverage: each query token found anywhere in the passage
	found := b.Op("ReduceMax", []*ir.Value{b.Op("Mul", []*ir.Value{eq, b.Op("Unsqueeze", []*ir.Value{p, i64(1)})})},
		ir.IntsAttr("axes", 2), ir.IntAttr("keepdims", 0))
	share := func(weight, hit *ir.Value) *ir.Value {
		num := b.Op("ReduceSum", []*ir.Value{b.Op("Mul", []*ir.Value{weight, hit}), i64(1)}, ir.IntAttr("keepdims", 1))
		den := b.Op("ReduceSum", []*ir.Value{weight, i64(1)}, ir.IntAttr("keepdims", 1))
		return b.Op("Div", []*ir.Value{num, b.Op("Max", []*ir.Value{den, f32(1e-6)})})
	}
	coverage := share(qw, found)
	// phrase: query tokens i, i+1 found at passage positions j, j+1
	head := func(v *ir.Value, axis int64) *ir.Value {
		return b.Op("Slice", []*ir.Value{v, i64(0), i64(-1), i64(axis)})
	}
	tail := func(v *ir.Value, axis int64) *ir.Value {
		return b.Op("Slice", []*ir.Value{v, i64(1), i64(math.MaxInt64), i64(axis)})
	}
	eq2 := b.Op("Mul", []*ir.Value{head(head(eq, 1), 2), tail(tail(eq, 1), 2)}) // [b,s-1,s-1]
	p2 := b.Op("Mul", []*ir.Value{head(p, 1), tail(p, 1)})
	found2 := b.Op("ReduceMax", []*ir.Value{b.Op("Mul", []*ir.Value{eq2, b.Op("Unsqueeze", []*ir.Value{p2, i64(1)})})},
		ir.IntsAttr("axes", 2), ir.IntAttr("keepdims", 0))
	qw2 := b.Op("Mul", []*ir.Value{head(qw, 1), tail(qw, 1)})
	phrase := share(qw2, found2)
	// focus: each passage token found in the query
	q := toF(b.Op("Greater", []*ir.Value{qw, f32(0)}))
	inQuery := b.Op("ReduceMax", []*ir.Value{b.Op("Mul", []*ir.Value{eq, b.Op("Unsqueeze", []*ir.Value{q, i64(2)})})},
		ir.IntsAttr("axes", 1), ir.IntAttr("keepdims", 0))
	focus := share(b.Op("Mul", []*ir.Value{w, p}), inQuery)
	logit := b.Op("Add", []*ir.Value{
		b.Op("Add", []*ir.Value{b.Op("Mul", []*ir.Value{coverage, f32(4)}), b.Op("Mul", []*ir.Value{phrase, f32(2)})}),
		b.Op("Add", []*ir.Value{focus, f32(-3)})})
	b.Output(logit, "logits")
	logit.Type = ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(1)}}
	return b.Graph()
}

// Models are the repository's model files.
type Models struct {
	TokenizerJSON []byte
	// PairTokenizerJSON is the reranker's (TokenizerJSON unless given).
	PairTokenizerJSON             []byte
	Embedder, Retriever, Reranker []byte
	// Dim is the width of the embedder's sentence_embedding.
	Dim int
	// EmbedderTypes and RerankerTypes tell whether the models take
	// token_type_ids.
	EmbedderTypes, RerankerTypes bool
	// EmbedderSeq and RerankerSeq name the models' symbolic sequence
	// dimension ("" when it is fixed).
	EmbedderSeq, RerankerSeq string
}

// Source is what the repository is made from: the passages, and the
// tokenizer.json and ONNX models to use instead of the generated ones
// (nil: generated from the passages). A given embedder or reranker needs
// its tokenizer.
type Source struct {
	Passages                      []string
	Tokenizer, Embedder, Reranker []byte
	// RerankerTokenizer is the reranker's tokenizer.json when it is not
	// the embedder's.
	RerankerTokenizer []byte
}

// BuildModels makes the repository's models: the tokenizer, embedder and
// reranker given in src or generated from its passages, and the retriever,
// whose passage embeddings are the embedder's own outputs, computed by
// kiln.
func BuildModels(ctx context.Context, src Source) (*Models, error) {
	if len(src.Passages) == 0 {
		return nil, errors.New("no passages")
	}
	if len(src.Passages) > 1<<16 {
		return nil, fmt.Errorf("%d passages: at most %d", len(src.Passages), 1<<16)
	}
	for i, p := range src.Passages {
		if strings.TrimSpace(p) == "" || strings.ContainsAny(p, "\r\n") {
			return nil, fmt.Errorf("passage %d: empty, or more than one line", i)
		}
	}
	if src.Tokenizer == nil && (src.Embedder != nil || src.Reranker != nil) {
		return nil, errors.New("a given embedder or reranker needs its tokenizer.json (-tokenizer)")
	}
	ms := &Models{TokenizerJSON: src.Tokenizer}
	var err error
	if ms.TokenizerJSON == nil {
		if ms.TokenizerJSON, err = TokenizerJSON(src.Passages); err != nil {
			return nil, err
		}
	}
	tok, err := tokenizer.Parse(ms.TokenizerJSON)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	ms.PairTokenizerJSON = ms.TokenizerJSON
	if src.RerankerTokenizer != nil {
		if src.Reranker == nil {
			return nil, errors.New("a reranker tokenizer needs its reranker (-reranker)")
		}
		if _, err := tokenizer.Parse(src.RerankerTokenizer); err != nil {
			return nil, fmt.Errorf("reranker tokenizer: %w", err)
		}
		ms.PairTokenizerJSON = src.RerankerTokenizer
	}
	var weights []float32
	if src.Embedder == nil || src.Reranker == nil {
		if weights, err = tokenWeights(tok, src.Passages); err != nil {
			return nil, err
		}
	}
	ms.Embedder = src.Embedder
	if ms.Embedder == nil {
		eg, err := Embedder(weights)
		if err != nil {
			return nil, err
		}
		if ms.Embedder, err = marshal(eg); err != nil {
			return nil, err
		}
	}
	ms.Reranker = src.Reranker
	if ms.Reranker == nil {
		if ms.Reranker, err = marshal(Reranker(weights)); err != nil {
			return nil, err
		}
	}
	if ms.RerankerTypes, ms.RerankerSeq, err = checkModel("reranker", ms.Reranker, "logits", 1); err != nil {
		return nil, err
	}
	if ms.EmbedderTypes, ms.EmbedderSeq, err = checkModel("embedder", ms.Embedder, "sentence_embedding", -1); err != nil {
		return nil, err
	}
	emb, err := embed(ctx, tok, ms.Embedder, ms.EmbedderTypes, src.Passages)
	if err != nil {
		return nil, fmt.Errorf("embedder: %w", err)
	}
	ms.Dim = emb.Shape[1]
	rg, err := Retriever(emb)
	if err != nil {
		return nil, err
	}
	if ms.Retriever, err = marshal(rg); err != nil {
		return nil, err
	}
	return ms, nil
}

// checkModel checks that an ONNX model takes input_ids and attention_mask
// (and maybe token_type_ids), INT64 [batch, seq], and has the output
// named out, FP32 [batch, width] (width -1: any), and reports whether it
// takes token_type_ids and the name of its symbolic sequence dimension
// ("" when fixed).
func checkModel(what string, b []byte, out string, width int) (types bool, seq string, err error) {
	m, err := kiln.LoadBytes(b)
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", what, err)
	}
	defer m.Close()
	for _, in := range m.Inputs() {
		switch in.Name {
		case "input_ids", "attention_mask":
		case "token_type_ids":
			types = true
		default:
			return false, "", fmt.Errorf("%s: input %q: want input_ids, attention_mask and maybe token_type_ids, as BERT exports have", what, in.Name)
		}
		if in.DType != tensor.Int64 || len(in.Shape) != 2 {
			return false, "", fmt.Errorf("%s: input %q is %v %v, want int64 [batch, seq]", what, in.Name, in.DType, in.Dims)
		}
		if in.Name == "input_ids" && in.Shape[1] < 0 && in.Dims[1] != "?" {
			seq = in.Dims[1]
		}
	}
	for _, name := range []string{"input_ids", "attention_mask"} {
		if m.InputType(name) == tensor.Undefined {
			return false, "", fmt.Errorf("%s: no input %q", what, name)
		}
	}
	for _, o := range m.Outputs() {
		if o.Name != out {
			continue
		}
		if o.DType != tensor.Float32 || len(o.Shape) != 2 || width > 0 && o.Shape[1] != width {
			want := "width"
			if width > 0 {
				want = strconv.Itoa(width)
			}
			return false, "", fmt.Errorf("%s: output %q is %v %v, want float32 [batch, %s]", what, out, o.DType, o.Dims, want)
		}
		return types, seq, nil
	}
	return false, "", fmt.Errorf("%s: no output %q", what, out)
}

// embed runs the embedder on texts tokenized by tok (token_type_ids too
// when types): [len(texts), width].
func embed(ctx context.Context, tok *tokenizer.Tokenizer, model []byte, types bool, texts []string) (*tensor.Tensor, error) {
	m, err := kiln.LoadBytes(model)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	var out *tensor.Tensor
	// a batch at a time, each padded to its longest
	const batch = 16
	for i := 0; i < len(texts); i += batch {
		var encs []*tokenizer.Encoding
		for _, s := range texts[i:min(i+batch, len(texts))] {
			e, err := tok.EncodeWith(s, nil, tokenizer.Options{Truncation: &tokenizer.Truncation{MaxLength: 256, Strategy: "longest_first"}})
			if err != nil {
				return nil, err
			}
			encs = append(encs, e)
		}
		bt := tokenizer.Pad(encs, tok.Padding)
		in := map[string]*tensor.Tensor{
			"input_ids":      tensor.FromInt64(bt.IDs, bt.Rows, bt.Len),
			"attention_mask": tensor.FromInt64(bt.AttentionMask, bt.Rows, bt.Len),
		}
		if types {
			in["token_type_ids"] = tensor.FromInt64(bt.TokenTypeIDs, bt.Rows, bt.Len)
		}
		res, err := m.Run(ctx, in)
		if err != nil {
			return nil, err
		}
		e := res["sentence_embedding"]
		if e == nil || e.DType != tensor.Float32 || len(e.Shape) != 2 || e.Shape[0] != bt.Rows {
			return nil, fmt.Errorf("sentence_embedding: got %v, want float32 [%d, width]", e, bt.Rows)
		}
		if out == nil {
			out = tensor.New(tensor.Float32, len(texts), e.Shape[1])
		}
		copy(out.Float32s()[i*e.Shape[1]:], e.Float32s())
	}
	return out, nil
}

func marshal(g *ir.Graph) ([]byte, error) {
	m, err := onnx.FromGraph(g, "kiln examples/rerank")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g.Name, err)
	}
	return m.Marshal(), nil
}
