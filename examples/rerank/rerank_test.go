package main

import (
	"bytes"
	"context"
	"math"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/grpcapi"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/serve/tokenizer"
	"github.com/kilnai/kiln/tensor"
)

// serveRepo writes the example repository with the command, serves it
// over HTTP and gRPC on loopback and returns the server and both
// addresses.
func serveRepo(t *testing.T) (*serve.Server, string, string) {
	t.Helper()
	repo := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"repo", "-out", repo}, &out, &errb); code != 0 {
		t.Fatalf("rerank repo: exit %d: %s", code, errb.String())
	}
	s := serve.New(serve.Options{Repository: repo})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	if !s.Ready() {
		t.Fatal("server not ready after loading the repository")
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	t.Cleanup(ts.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	grpcapi.Register(g, s, true)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return s, ts.URL, lis.Addr().String()
}

// reference computes what the models are documented to compute, in
// plain Go from the token ids and weights, not through ONNX or kiln's
// kernels.
type reference struct {
	tok      *tokenizer.Tokenizer
	weights  []float32
	table    []float32 // the embedder's [vocab, Dim] table
	passages []string
}

func newReference(t *testing.T) *reference {
	t.Helper()
	ps := corpus()
	tj, err := TokenizerJSON(ps)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Parse(tj)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tokenWeights(tok, ps)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Embedder(w)
	if err != nil {
		t.Fatal(err)
	}
	r := &reference{tok: tok, weights: w, passages: ps}
	for _, v := range g.Initializers {
		if v.Name == "embeddings.word_embeddings" {
			r.table = v.Const.Float32s()
		}
	}
	if r.table == nil {
		t.Fatal("no embedding table in the embedder")
	}
	return r
}

// embed is the L2-normalized mean of the rows of the text's tokens.
func (r *reference) embed(t *testing.T, text string) []float64 {
	enc, err := r.tok.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float64, Dim)
	for _, id := range enc.IDs {
		for d := range Dim {
			v[d] += float64(r.table[int(id)*Dim+d])
		}
	}
	var n float64
	for _, x := range v {
		n += x * x
	}
	n = math.Sqrt(n)
	for d := range v {
		v[d] /= n
	}
	return v
}

// retrieval is the cosine of the query with each passage.
func (r *reference) retrieval(t *testing.T, query string) []float64 {
	q := r.embed(t, query)
	out := make([]float64, len(r.passages))
	for i, p := range r.passages {
		e := r.embed(t, p)
		for d := range Dim {
			out[i] += q[d] * e[d]
		}
	}
	return out
}

// rerank is 4 coverage + 2 phrase + focus - 3 over the pair's tokens.
func (r *reference) rerank(t *testing.T, query, passage string) float64 {
	enc, err := r.tok.EncodePair(query, passage)
	if err != nil {
		t.Fatal(err)
	}
	var qi, pi []int64 // token ids of the query (weight > 0) and passage positions
	var qw []float64
	for i, id := range enc.IDs {
		if enc.TypeIDs[i] == 0 {
			qi = append(qi, id)
			qw = append(qw, float64(r.weights[id]))
		} else {
			pi = append(pi, id)
		}
	}
	cov, covDen := 0.0, 0.0
	for i, id := range qi {
		covDen += qw[i]
		if slices.Contains(pi, id) {
			cov += qw[i]
		}
	}
	ph, phDen := 0.0, 0.0
	for i := 0; i+1 < len(qi); i++ {
		w := qw[i] * qw[i+1]
		phDen += w
		for j := 0; j+1 < len(pi); j++ {
			if pi[j] == qi[i] && pi[j+1] == qi[i+1] {
				ph += w
				break
			}
		}
	}
	fo, foDen := 0.0, 0.0
	for _, id := range pi {
		w := float64(r.weights[id])
		foDen += w
		for i, q := range qi {
			if q == id && qw[i] > 0 {
				fo += w
				break
			}
		}
	}
	share := func(a, b float64) float64 { return a / max(b, 1e-6) }
	return 4*share(cov, covDen) + 2*share(ph, phDen) + share(fo, foDen) - 3
}

// TestRetrieveThenRerank (issue 14, item 3) serves the example repository
// on loopback and searches it over HTTP and gRPC: both protocols give the
// same ranked passages; the retrieval scores are the cosines and the
// reranker's the logits the models are documented to compute (worked in
// plain Go by the test); the passages found are the ones about the query;
// a query that is not UTF-8 fails in the tokenizer step, named.
func TestRetrieveThenRerank(t *testing.T) {
	s, url, grpcAddr := serveRepo(t)
	ref := newReference(t)
	g, err := DialGRPC(grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Conn.Close()
	clients := map[string]Client{"HTTP": HTTPClient{url}, "gRPC": g}
	const candidates, k = 8, 3
	tests := []struct {
		query string
		top   int // the passage a person would pick
	}{
		{"how does bread rise", 9},
		{"what does the moon's gravity do", 18},
		{"goroutines and channels in go", 24},
		{"black tea leaves", 7},
		{"earthquake under the sea", 34},
		{"why is the sky red on mars", 20},
		{"Espresso: water through ground coffee under PRESSURE", 6},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			// the reference: the 8 best cosines, reranked
			cos := ref.retrieval(t, tc.query)
			idx := make([]int, len(cos))
			for i := range idx {
				idx[i] = i
			}
			slices.SortStableFunc(idx, func(a, b int) int {
				switch {
				case cos[a] > cos[b]:
					return -1
				case cos[a] < cos[b]:
					return 1
				}
				return 0
			})
			var want []Hit
			for _, i := range idx[:candidates] {
				want = append(want, Hit{Index: i, Passage: ref.passages[i], Retrieval: cos[i], Rerank: ref.rerank(t, tc.query, ref.passages[i])})
			}
			slices.SortStableFunc(want, func(a, b Hit) int {
				switch {
				case a.Rerank > b.Rerank:
					return -1
				case a.Rerank < b.Rerank:
					return 1
				}
				return 0
			})
			var got [][]Hit
			for _, name := range []string{"HTTP", "gRPC"} {
				hits, err := Search(ctx, clients[name], tc.query, candidates, k)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if len(hits) != k {
					t.Fatalf("%s: %d hits, want %d", name, len(hits), k)
				}
				for i, h := range hits {
					w := want[i]
					if h.Index != w.Index || h.Passage != w.Passage || math.Abs(h.Retrieval-w.Retrieval) > 1e-4 || math.Abs(h.Rerank-w.Rerank) > 1e-4 {
						t.Errorf("%s: hit %d: [%d] retrieval %.6f rerank %.6f, want [%d] %.6f %.6f", name, i, h.Index, h.Retrieval, h.Rerank, w.Index, w.Retrieval, w.Rerank)
					}
				}
				if hits[0].Index != tc.top {
					t.Errorf("%s: first passage [%d] %q, want [%d] %q", name, hits[0].Index, hits[0].Passage, tc.top, ref.passages[tc.top])
				}
				got = append(got, hits)
			}
			for i := range got[0] {
				a, b := got[0][i], got[1][i]
				// JSON carries the float32 logits in their shortest form
				if a.Index != b.Index || a.Passage != b.Passage || float32(a.Rerank) != float32(b.Rerank) || a.Retrieval != b.Retrieval {
					t.Errorf("HTTP and gRPC differ: %v, %v", a, b)
				}
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		_, err := g.Rerank(ctx, "caf\xe9", []string{"a passage"})
		if err == nil || !strings.Contains(err.Error(), "InvalidArgument") || !strings.Contains(err.Error(), "pair_tokenizer") || !strings.Contains(err.Error(), "not UTF-8") {
			t.Errorf("query not UTF-8: %v, want InvalidArgument naming the tokenizer step", err)
		}
		if _, err := Search(ctx, clients["HTTP"], "bees", MaxBatch+1, 3); err == nil {
			t.Errorf("%d candidates: no error", MaxBatch+1)
		}
	})

	// the search command prints the ranked passages
	for _, args := range [][]string{{"-url", url}, {"-grpc", grpcAddr}} {
		var out, errb bytes.Buffer
		cmd := append(append([]string{"search"}, args...), "-k", "2", "what", "does", "the", "moon's", "gravity", "do")
		if code := run(cmd, &out, &errb); code != 0 {
			t.Fatalf("search %v: exit %d: %s", args, code, errb.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 || lines[0] != "query: what does the moon's gravity do" || !strings.HasPrefix(lines[1], "1. rerank ") ||
			!strings.HasSuffix(lines[1], "[18] "+ref.passages[18]) {
			t.Errorf("search %v printed\n%s", args, out.String())
		}
	}

	// each ensemble and step counted its requests
	stats, err := s.ModelStats("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if st.SuccessCount == 0 {
			t.Errorf("%s: no successful request", st.Model)
		}
	}
}

// TestVocabulary: the generated WordPiece vocabulary splits inflected
// words into their stem and a suffix piece, so that a query's "volcano"
// matches a passage's "volcanoes"; a word of the corpus's letters that is
// not in it still tokenizes, into pieces.
func TestVocabulary(t *testing.T) {
	ref := newReference(t)
	for _, c := range []struct {
		text string
		want []string
	}{
		{"Volcanoes erupted", []string{"[CLS]", "volcano", "##es", "erupt", "##ed", "[SEP]"}},
		{"bees", []string{"[CLS]", "bee", "##s", "[SEP]"}},
		{"zebra", []string{"[CLS]", "z", "##e", "##b", "##r", "##a", "[SEP]"}},
	} {
		enc, err := ref.tok.Encode(c.text)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(enc.Tokens, c.want) {
			t.Errorf("%q: %q, want %q", c.text, enc.Tokens, c.want)
		}
	}
}

// typedEmbedder is the generated embedder with a token_type_ids input, as
// BERT exports have (the graph adds types times 0 to the mask).
func typedEmbedder(t *testing.T, weights []float32) []byte {
	t.Helper()
	g, err := Embedder(weights)
	if err != nil {
		t.Fatal(err)
	}
	types := &ir.Value{Name: "token_type_ids", Type: ir.Type{DType: tensor.Int64, Shape: ir.Shape{ir.S("batch"), ir.S("seq")}}}
	g.Inputs = append(g.Inputs, types)
	zero := &ir.Value{Name: "zero_i64", Const: tensor.FromInt64([]int64{0}, 1), Type: ir.Type{DType: tensor.Int64, Shape: ir.KnownShape(1)}}
	g.Initializers = append(g.Initializers, zero)
	mul := &ir.Node{Name: "types_times_zero", OpType: "Mul", Inputs: []*ir.Value{types, zero}, Attrs: map[string]*ir.Attr{}}
	mul.Outputs = []*ir.Value{{Name: "types_zero", Producer: mul}}
	add := &ir.Node{Name: "mask_plus_zero", OpType: "Add", Inputs: []*ir.Value{g.Inputs[1], mul.Outputs[0]}, Attrs: map[string]*ir.Attr{}}
	add.Outputs = []*ir.Value{{Name: "mask_typed", Producer: add}}
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			if in == g.Inputs[1] {
				n.Inputs[i] = add.Outputs[0]
			}
		}
	}
	g.Nodes = append([]*ir.Node{mul, add}, g.Nodes...)
	b, err := marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDropIn: the repo command takes a tokenizer.json, an embedder and a
// reranker from files, as a real BERT sentence encoder and cross-encoder
// exported to ONNX would be given: here the generated ones written out,
// the embedder with a token_type_ids input too (the configs and ensembles
// then pass it), and a file of passages. The search finds what the
// generated repository finds; files that cannot be the models are refused
// naming what is wrong.
func TestDropIn(t *testing.T) {
	ref := newReference(t)
	ms, err := BuildModels(context.Background(), Source{Passages: ref.passages})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{
		"tokenizer.json": ms.TokenizerJSON,
		"embedder.onnx":  typedEmbedder(t, ref.weights),
		"reranker.onnx":  ms.Reranker,
		"passages.txt":   []byte(Passages),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	repo := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"repo", "-out", repo, "-passages", f("passages.txt"), "-tokenizer", f("tokenizer.json"),
		"-embedder", f("embedder.onnx"), "-reranker", f("reranker.onnx"), "-reranker-tokenizer", f("tokenizer.json")}, &out, &errb); code != 0 {
		t.Fatalf("repo: exit %d: %s", code, errb.String())
	}
	cfg, err := os.ReadFile(filepath.Join(repo, Retrieve, "config.pbtxt"))
	if err != nil || !strings.Contains(string(cfg), `input_map { key: "token_type_ids" value: "query_types" }`) {
		t.Errorf("the retrieve ensemble does not pass token_type_ids to the embedder: %s %v", cfg, err)
	}
	s := serve.New(serve.Options{Repository: repo})
	defer s.Shutdown(context.Background())
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	defer ts.Close()
	hits, err := Search(context.Background(), HTTPClient{ts.URL}, "how does bread rise", 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 2 || hits[0].Index != 9 || hits[1].Index != 8 {
		t.Errorf("got %v, want passages 9 and 8", hits)
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"embedder without its tokenizer", []string{"-embedder", f("embedder.onnx")}, "needs its tokenizer.json"},
		{"reranker as the embedder", []string{"-tokenizer", f("tokenizer.json"), "-embedder", f("reranker.onnx")}, `embedder: no output "sentence_embedding"`},
		{"embedder as the reranker", []string{"-tokenizer", f("tokenizer.json"), "-reranker", f("embedder.onnx")}, `reranker: no output "logits"`},
		{"not a tokenizer", []string{"-tokenizer", f("passages.txt"), "-embedder", f("embedder.onnx")}, "tokenizer: tokenizer: bad tokenizer.json"},
		{"not a model", []string{"-tokenizer", f("tokenizer.json"), "-embedder", f("tokenizer.json")}, "embedder:"},
		{"missing file", []string{"-reranker", f("nope.onnx")}, "no such file"},
		{"reranker tokenizer alone", []string{"-tokenizer", f("tokenizer.json"), "-reranker-tokenizer", f("tokenizer.json")}, "a reranker tokenizer needs its reranker"},
		{"bad reranker tokenizer", []string{"-tokenizer", f("tokenizer.json"), "-reranker", f("reranker.onnx"), "-reranker-tokenizer", f("passages.txt")}, "reranker tokenizer: tokenizer: bad tokenizer.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"repo", "-out", t.TempDir()}, c.args...), &out, &errb)
			if code != 1 || !strings.Contains(errb.String(), c.want) {
				t.Errorf("exit %d: %s, want exit 1 and %q", code, errb.String(), c.want)
			}
		})
	}
}

// TestDropInBERT serves a real transformer as the embedder: the shared
// bert_mini (a 4-layer BERT encoder, random weights) with its
// pooler_output renamed sentence_embedding, and the generated tokenizer
// (536 tokens, inside bert_mini's 2048). Its rankings mean nothing (the
// weights are random); what is checked is that the retrieval scores
// served over HTTP and gRPC are the dot products of bert_mini's own
// embeddings of the query and the passages, run by kiln directly.
func TestDropInBERT(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "models", "bert_mini", "model.onnx"))
	if err != nil {
		t.Skipf("needs the reference model ../shared/models/bert_mini: %v", err)
	}
	mp, err := onnx.DecodeModel(src)
	if err != nil {
		t.Fatal(err)
	}
	renamed := 0
	for _, o := range mp.Graph.Output {
		if o.Name == "pooler_output" {
			o.Name = "sentence_embedding"
			renamed++
		}
	}
	for _, n := range mp.Graph.Node {
		for i, o := range n.Output {
			if o == "pooler_output" {
				n.Output[i] = "sentence_embedding"
				renamed++
			}
		}
	}
	if renamed != 2 {
		t.Fatalf("bert_mini: pooler_output renamed %d times, want 2 (an output and its node)", renamed)
	}
	bert := mp.Marshal()
	ref := newReference(t)
	tj, err := TokenizerJSON(ref.passages)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644)
	os.WriteFile(filepath.Join(dir, "bert.onnx"), bert, 0o644)
	repo := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"repo", "-out", repo, "-tokenizer", filepath.Join(dir, "tokenizer.json"), "-embedder", filepath.Join(dir, "bert.onnx")}, &out, &errb); code != 0 {
		t.Fatalf("repo: exit %d: %s", code, errb.String())
	}
	s := serve.New(serve.Options{Repository: repo})
	defer s.Shutdown(context.Background())
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	defer ts.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	grpcapi.Register(g, s, true)
	go g.Serve(lis)
	defer g.Stop()
	gc, err := DialGRPC(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Conn.Close()

	// bert_mini's embeddings, by kiln directly
	const query = "how does bread rise"
	emb, err := embed(context.Background(), ref.tok, bert, false, append([]string{query}, ref.passages...))
	if err != nil {
		t.Fatal(err)
	}
	w := emb.Shape[1]
	e := emb.Float32s()
	for name, c := range map[string]Client{"HTTP": HTTPClient{ts.URL}, "gRPC": gc} {
		hits, err := c.Retrieve(context.Background(), query, 5)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, h := range hits {
			var dot float64
			for d := range w {
				dot += float64(e[d]) * float64(e[(1+h.Index)*w+d])
			}
			if math.Abs(h.Retrieval-dot) > 1e-3*max(1, math.Abs(dot)) {
				t.Errorf("%s: passage %d: retrieval %v, bert_mini's dot product %v", name, h.Index, h.Retrieval, dot)
			}
		}
	}
}
