// Command rerank is kiln serve's retrieve-then-rerank example: it writes
// a model repository (a tokenizer, an embedding model, a retriever over
// the bundled passages, a cross-encoder reranker, and the ensembles
// retrieve and rerank that chain them), and searches the passages over
// HTTP or gRPC, printing the ranked passages.
//
//	go run ./examples/rerank repo -out /tmp/rerank-repo
//	kiln serve --model-repository /tmp/rerank-repo
//	go run ./examples/rerank search "how do bees make honey"
//
// The models are small stand-ins generated in Go (see models.go and
// README.md): a real BERT sentence encoder and cross-encoder exported to
// ONNX drop in with the same input and output names.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
)

// Names of the models and of the ensembles' inputs and outputs.
const (
	Retrieve       = "retrieve"
	Rerank         = "rerank"
	QueryTokenizer = "query_tokenizer"
	PairTokenizer  = "pair_tokenizer"
	EmbedderModel  = "embedder"
	RetrieverModel = "retriever"
	RerankerModel  = "reranker"
	InQuery        = "QUERY"
	InPassage      = "PASSAGE"
	OutScores      = "SCORES"
	OutScore       = "SCORE"
	// PassagesFile is the retriever's label file: the passages, one a
	// line, so that the top-k of its scores name their passages.
	PassagesFile = "passages.txt"
	// MaxBatch is every model's max_batch_size: the most candidates one
	// rerank request scores.
	MaxBatch = 16
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  rerank repo -out DIR [-passages FILE] [-tokenizer tokenizer.json -embedder MODEL.onnx -reranker MODEL.onnx [-reranker-tokenizer tokenizer.json]]
  rerank search [-url http://localhost:8000 | -grpc localhost:8001] [-candidates 8] [-k 3] QUERY...`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "repo":
		err = repoCmd(args[1:], stdout, stderr)
	case "search":
		err = searchCmd(args[1:], stdout, stderr)
	default:
		usage(stderr)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "rerank:", err)
		return 1
	}
	return 0
}

// Configs are the config.pbtxt of each model of the repository for ms
// and its passages: token_type_ids flow to the embedder and the reranker
// only where they take them.
func Configs(ms *Models, passages int) map[string]string {
	types := func(on bool, s string) string {
		if on {
			return s
		}
		return ""
	}
	// the sequence length each model is built for
	dims := func(seq, rng string) string {
		if seq == "" {
			return ""
		}
		return fmt.Sprintf("parameters { key: \"dims\" value { string_value: %q } }\n", seq+"="+rng)
	}
	return map[string]string{
		QueryTokenizer: `# a query (UTF-8 text) in, BERT token ids out, padded to the batch's longest
name: "query_tokenizer"
platform: "kiln_tokenizer"
max_batch_size: 16
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [
  { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  ` + types(ms.EmbedderTypes, `{ name: "token_type_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  `) + `{ name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] }
]
parameters { key: "max_length" value { string_value: "64" } }
dynamic_batching { max_queue_delay_microseconds: 100 }
`,
		PairTokenizer: `# (query, passage) pairs in, [CLS] query [SEP] passage [SEP] out, token types 0 then 1
name: "pair_tokenizer"
platform: "kiln_tokenizer"
max_batch_size: 16
input [ { name: "QUERY" data_type: TYPE_STRING dims: [ 1 ] }, { name: "PASSAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
output [
  { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  ` + types(ms.RerankerTypes, `{ name: "token_type_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  `) + `{ name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] }
]
parameters { key: "max_length" value { string_value: "256" } }
dynamic_batching { max_queue_delay_microseconds: 100 }
`,
		EmbedderModel: fmt.Sprintf(`# token ids in, an L2-normalized sentence embedding out
name: "embedder"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  %s{ name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] }
]
output [ { name: "sentence_embedding" data_type: TYPE_FP32 dims: [ %d ] } ]
%sdynamic_batching { max_queue_delay_microseconds: 100 }
`, types(ms.EmbedderTypes, `{ name: "token_type_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  `), ms.Dim, dims(ms.EmbedderSeq, "1,16,64")),
		RetrieverModel: fmt.Sprintf(`# a query embedding in, its cosine with each passage out; the passages
# are the labels, so the classification extension gives the top passages
name: "retriever"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "sentence_embedding" data_type: TYPE_FP32 dims: [ %d ] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ %d ] label_filename: "passages.txt" } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
`, ms.Dim, passages),
		RerankerModel: `# a cross-encoder: (query, passage) token ids in, one relevance logit out
name: "reranker"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  ` + types(ms.RerankerTypes, `{ name: "token_type_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  `) + `{ name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] }
]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 1 ] } ]
` + dims(ms.RerankerSeq, "3,128,256") + `dynamic_batching { max_queue_delay_microseconds: 100 }
`,
		Retrieve: fmt.Sprintf(`# query text -> tokenizer -> embedder -> retriever -> a score per passage;
# ask for the top k with the classification extension ("score:index:passage")
name: "retrieve"
platform: "ensemble"
max_batch_size: 16
input [ { name: "QUERY" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "SCORES" data_type: TYPE_FP32 dims: [ %d ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "query_tokenizer"
      model_version: -1
      input_map { key: "TEXT" value: "QUERY" }
      output_map { key: "input_ids" value: "query_ids" }
      output_map { key: "attention_mask" value: "query_mask" }%s
    },
    {
      model_name: "embedder"
      model_version: -1
      input_map { key: "input_ids" value: "query_ids" }
      input_map { key: "attention_mask" value: "query_mask" }%s
      output_map { key: "sentence_embedding" value: "query_embedding" }
    },
    {
      model_name: "retriever"
      model_version: -1
      input_map { key: "sentence_embedding" value: "query_embedding" }
      output_map { key: "scores" value: "SCORES" }
    }
  ]
}
`, passages, types(ms.EmbedderTypes, `
      output_map { key: "token_type_ids" value: "query_types" }`), types(ms.EmbedderTypes, `
      input_map { key: "token_type_ids" value: "query_types" }`)),
		Rerank: fmt.Sprintf(`# (query, passage) texts -> pair tokenizer -> cross-encoder -> a relevance logit
name: "rerank"
platform: "ensemble"
max_batch_size: 16
input [ { name: "QUERY" data_type: TYPE_STRING dims: [ 1 ] }, { name: "PASSAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "pair_tokenizer"
      model_version: -1
      input_map { key: "QUERY" value: "QUERY" }
      input_map { key: "PASSAGE" value: "PASSAGE" }
      output_map { key: "input_ids" value: "pair_ids" }
      output_map { key: "attention_mask" value: "pair_mask" }%s
    },
    {
      model_name: "reranker"
      model_version: -1
      input_map { key: "input_ids" value: "pair_ids" }
      input_map { key: "attention_mask" value: "pair_mask" }%s
      output_map { key: "logits" value: "SCORE" }
    }
  ]
}
`, types(ms.RerankerTypes, `
      output_map { key: "token_type_ids" value: "pair_types" }`), types(ms.RerankerTypes, `
      input_map { key: "token_type_ids" value: "pair_types" }`)),
	}
}

// modelNames is the order the repository's models are written and listed.
var modelNames = []string{QueryTokenizer, PairTokenizer, EmbedderModel, RetrieverModel, RerankerModel, Retrieve, Rerank}

// WriteRepository makes the models from src (see BuildModels) and writes
// the repository under dir: each model a folder with config.pbtxt and
// version folder 1 (tokenizer.json, model.onnx, or empty for the
// ensembles), and the passages beside the retriever's config.
func WriteRepository(ctx context.Context, dir string, src Source) error {
	ms, err := BuildModels(ctx, src)
	if err != nil {
		return err
	}
	ps := src.Passages
	files := map[string][]byte{
		filepath.Join(QueryTokenizer, "1", "tokenizer.json"): ms.TokenizerJSON,
		filepath.Join(PairTokenizer, "1", "tokenizer.json"):  ms.PairTokenizerJSON,
		filepath.Join(EmbedderModel, "1", "model.onnx"):      ms.Embedder,
		filepath.Join(RetrieverModel, "1", "model.onnx"):     ms.Retriever,
		filepath.Join(RetrieverModel, PassagesFile):          []byte(strings.Join(ps, "\n") + "\n"),
		filepath.Join(RerankerModel, "1", "model.onnx"):      ms.Reranker,
	}
	for name, cfg := range Configs(ms, len(ps)) {
		files[filepath.Join(name, "config.pbtxt")] = []byte(cfg)
		if err := os.MkdirAll(filepath.Join(dir, name, "1"), 0o755); err != nil {
			return err
		}
	}
	for path, b := range files {
		if err := os.WriteFile(filepath.Join(dir, path), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func repoCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("repo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "repository folder to write (created)")
	passages := fs.String("passages", "", "passages to search, one a line (default: the bundled passages.txt)")
	tok := fs.String("tokenizer", "", "the tokenizer.json of the embedder and reranker (default: generated from the passages)")
	embedder := fs.String("embedder", "", "an ONNX sentence encoder: input_ids, attention_mask (token_type_ids) in, sentence_embedding out (default: generated)")
	rerankerTok := fs.String("reranker-tokenizer", "", "the reranker's tokenizer.json, when it is not the embedder's (default: -tokenizer)")
	reranker := fs.String("reranker", "", "an ONNX cross-encoder: input_ids, attention_mask (token_type_ids) in, logits [batch, 1] out (default: generated)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return errors.New("repo: want -out DIR (and maybe -passages, -tokenizer, -embedder, -reranker, -reranker-tokenizer files)")
	}
	src := Source{Passages: corpus()}
	if *passages != "" {
		b, err := os.ReadFile(*passages)
		if err != nil {
			return err
		}
		src.Passages = strings.Split(strings.TrimRight(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n"), "\n")
	}
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{*tok, &src.Tokenizer}, {*embedder, &src.Embedder}, {*reranker, &src.Reranker}, {*rerankerTok, &src.RerankerTokenizer}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return err
		}
		*f.dst = b
	}
	if err := WriteRepository(context.Background(), *out, src); err != nil {
		return err
	}
	for _, n := range modelNames {
		fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(*out, n))
	}
	return nil
}

// Hit is a ranked passage.
type Hit struct {
	Index     int
	Passage   string
	Retrieval float64 // cosine of the query and passage embeddings
	Rerank    float64 // the cross-encoder's logit
}

// Client asks the two ensembles, over HTTP or gRPC.
type Client interface {
	// Retrieve returns the k passages of the highest retrieval scores.
	Retrieve(ctx context.Context, query string, k int) ([]Hit, error)
	// Rerank scores (query, passage) pairs with the cross-encoder.
	Rerank(ctx context.Context, query string, passages []string) ([]float64, error)
}

// Search retrieves candidates passages for the query, reranks them with
// the cross-encoder (one batched request) and returns the k best, best
// first (ties keep the retrieval order).
func Search(ctx context.Context, c Client, query string, candidates, k int) ([]Hit, error) {
	if candidates < 1 || candidates > MaxBatch {
		return nil, fmt.Errorf("candidates %d: want 1 to %d", candidates, MaxBatch)
	}
	hits, err := c.Retrieve(ctx, query, candidates)
	if err != nil {
		return nil, fmt.Errorf("retrieve: %w", err)
	}
	passages := make([]string, len(hits))
	for i, h := range hits {
		passages[i] = h.Passage
	}
	scores, err := c.Rerank(ctx, query, passages)
	if err != nil {
		return nil, fmt.Errorf("rerank: %w", err)
	}
	for i := range hits {
		hits[i].Rerank = scores[i]
	}
	slices.SortStableFunc(hits, func(a, b Hit) int {
		switch {
		case a.Rerank > b.Rerank:
			return -1
		case a.Rerank < b.Rerank:
			return 1
		}
		return 0
	})
	return hits[:min(k, len(hits))], nil
}

// parseClass reads a classification string "score:index:label".
func parseClass(s string) (Hit, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return Hit{}, fmt.Errorf("classification %q: want score:index:label", s)
	}
	score, err1 := strconv.ParseFloat(parts[0], 64)
	idx, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return Hit{}, fmt.Errorf("classification %q: want score:index:label", s)
	}
	return Hit{Index: idx, Passage: parts[2], Retrieval: score}, nil
}

// HTTPClient talks KServe v2 JSON to kiln serve's HTTP port.
type HTTPClient struct{ URL string }

func (c HTTPClient) infer(ctx context.Context, model string, req any) ([]json.RawMessage, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(c.URL, "/")+"/v2/models/"+model+"/infer", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var out struct {
		Outputs []struct {
			Data json.RawMessage `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	var data []json.RawMessage
	for _, o := range out.Outputs {
		data = append(data, o.Data)
	}
	return data, nil
}

func textInput(name string, texts ...string) map[string]any {
	return map[string]any{"name": name, "datatype": "BYTES", "shape": []int{len(texts), 1}, "data": texts}
}

// Retrieve implements Client.
func (c HTTPClient) Retrieve(ctx context.Context, query string, k int) ([]Hit, error) {
	data, err := c.infer(ctx, Retrieve, map[string]any{
		"inputs":  []any{textInput(InQuery, query)},
		"outputs": []any{map[string]any{"name": OutScores, "parameters": map[string]any{"classification": k}}},
	})
	if err != nil {
		return nil, err
	}
	var classes []string
	if len(data) != 1 || json.Unmarshal(data[0], &classes) != nil || len(classes) != k {
		return nil, fmt.Errorf("response: want %d classes of %s", k, OutScores)
	}
	hits := make([]Hit, k)
	for i, s := range classes {
		if hits[i], err = parseClass(s); err != nil {
			return nil, err
		}
	}
	return hits, nil
}

// Rerank implements Client.
func (c HTTPClient) Rerank(ctx context.Context, query string, passages []string) ([]float64, error) {
	queries := make([]string, len(passages))
	for i := range queries {
		queries[i] = query
	}
	data, err := c.infer(ctx, Rerank, map[string]any{"inputs": []any{textInput(InQuery, queries...), textInput(InPassage, passages...)}})
	if err != nil {
		return nil, err
	}
	var scores []float64
	if len(data) != 1 || json.Unmarshal(data[0], &scores) != nil || len(scores) != len(passages) {
		return nil, fmt.Errorf("response: want %d values of %s", len(passages), OutScore)
	}
	return scores, nil
}

// GRPCClient talks KServe v2 gRPC to kiln serve's gRPC port.
type GRPCClient struct{ Conn *grpc.ClientConn }

// DialGRPC connects to addr (host:port) without TLS.
func DialGRPC(addr string) (GRPCClient, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	return GRPCClient{cc}, err
}

func texts(ss ...string) *tensor.Tensor {
	return &tensor.Tensor{DType: tensor.String, Shape: []int{len(ss), 1}, Strings: ss}
}

// Retrieve implements Client.
func (c GRPCClient) Retrieve(ctx context.Context, query string, k int) ([]Hit, error) {
	req, err := api.NewInferRequest(Retrieve, map[string]*tensor.Tensor{InQuery: texts(query)})
	if err != nil {
		return nil, err
	}
	req.Outputs = []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: OutScores,
		Parameters: map[string]*inference.InferParameter{"classification": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: int64(k)}}}}}
	resp, err := inference.NewGRPCInferenceServiceClient(c.Conn).ModelInfer(ctx, req)
	if err != nil {
		return nil, err
	}
	outs, err := api.ResponseTensors(resp)
	if err != nil {
		return nil, err
	}
	got := outs[OutScores]
	if got == nil || got.DType != tensor.String || len(got.Strings) != k {
		return nil, fmt.Errorf("response: want %d classes of %s, got %v", k, OutScores, got)
	}
	hits := make([]Hit, k)
	for i, s := range got.Strings {
		if hits[i], err = parseClass(s); err != nil {
			return nil, err
		}
	}
	return hits, nil
}

// Rerank implements Client.
func (c GRPCClient) Rerank(ctx context.Context, query string, passages []string) ([]float64, error) {
	queries := make([]string, len(passages))
	for i := range queries {
		queries[i] = query
	}
	req, err := api.NewInferRequest(Rerank, map[string]*tensor.Tensor{InQuery: texts(queries...), InPassage: texts(passages...)})
	if err != nil {
		return nil, err
	}
	resp, err := inference.NewGRPCInferenceServiceClient(c.Conn).ModelInfer(ctx, req)
	if err != nil {
		return nil, err
	}
	outs, err := api.ResponseTensors(resp)
	if err != nil {
		return nil, err
	}
	got := outs[OutScore]
	if got == nil || got.DType != tensor.Float32 || got.Len() != len(passages) {
		return nil, fmt.Errorf("response: want %d values of %s, got %v", len(passages), OutScore, got)
	}
	scores := make([]float64, len(passages))
	for i, v := range got.Float32s() {
		scores[i] = float64(v)
	}
	return scores, nil
}

func searchCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("search", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://localhost:8000", "kiln serve's HTTP address")
	grpcAddr := fs.String("grpc", "", "kiln serve's gRPC address (host:port); used instead of -url when set")
	candidates := fs.Int("candidates", 8, fmt.Sprintf("passages retrieved and reranked (1 to %d)", MaxBatch))
	k := fs.Int("k", 3, "passages printed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("search: give a query")
	}
	query := strings.Join(fs.Args(), " ")
	var c Client = HTTPClient{*url}
	if *grpcAddr != "" {
		g, err := DialGRPC(*grpcAddr)
		if err != nil {
			return err
		}
		defer g.Conn.Close()
		c = g
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hits, err := Search(ctx, c, query, *candidates, *k)
	if err != nil {
		return err
	}
	PrintHits(stdout, query, hits)
	return nil
}

// PrintHits prints the ranked passages: rank, reranker logit, retrieval
// cosine, passage number and text.
func PrintHits(w io.Writer, query string, hits []Hit) {
	fmt.Fprintf(w, "query: %s\n", query)
	for i, h := range hits {
		fmt.Fprintf(w, "%d. rerank %.3f  retrieval %.3f  [%d] %s\n", i+1, h.Rerank, h.Retrieval, h.Index, h.Passage)
	}
}
