package serve_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/tensor"
)

// tokenizerRepo writes a repository of kiln_tokenizer models, each with
// the given config and the hand-worked BERT tokenizer of
// serve/tokenizer/testdata in its version folder.
func tokenizerRepo(t *testing.T, configs map[string]string) string {
	t.Helper()
	tj, err := os.ReadFile(filepath.Join("tokenizer", "testdata", "bert_tiny.json"))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	for name, cfg := range configs {
		os.MkdirAll(filepath.Join(repo, name, "1"), 0o755)
		os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(cfg), 0o644)
		os.WriteFile(filepath.Join(repo, name, "1", "tokenizer.json"), tj, 0o644)
	}
	return repo
}

const (
	tokEncodeConfig = `name: "tok"
platform: "kiln_tokenizer"
max_batch_size: 8
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [
  { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  { name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] },
  { name: "token_type_ids" data_type: TYPE_INT32 dims: [ -1 ] }
]
`
	tokPairConfig = `name: "pair"
platform: "kiln_tokenizer"
max_batch_size: 8
input [ { name: "QUERY" data_type: TYPE_STRING dims: [ 1 ] }, { name: "PASSAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] }, { name: "token_type_ids" data_type: TYPE_INT64 dims: [ -1 ] } ]
`
	tokFixedConfig = `name: "fixed"
platform: "kiln_tokenizer"
max_batch_size: 8
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "input_ids" data_type: TYPE_INT64 dims: [ 6 ] }, { name: "attention_mask" data_type: TYPE_INT64 dims: [ 6 ] } ]
parameters { key: "max_length" value { string_value: "6" } }
parameters { key: "padding" value { string_value: "max_length" } }
`
	tokSingleConfig = `name: "single"
platform: "kiln_tokenizer"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "input_ids" data_type: TYPE_INT32 dims: [ -1 ] } ]
parameters { key: "add_special_tokens" value { string_value: "false" } }
`
	tokDecodeConfig = `name: "detok"
platform: "kiln_tokenizer"
max_batch_size: 8
input [ { name: "IDS" data_type: TYPE_INT64 dims: [ -1 ] } ]
output [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
`
)

// inferJSON posts a KServe v2 JSON request and returns the outputs by
// name (data as raw JSON) or the error body.
func inferJSON(t *testing.T, url, model, body string) (map[string]json.RawMessage, map[string][]int, int, string) {
	t.Helper()
	resp, err := http.Post(url+"/v2/models/"+model+"/infer", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, nil, resp.StatusCode, string(b)
	}
	var out struct {
		Outputs []struct {
			Name  string          `json:"name"`
			Shape []int           `json:"shape"`
			Data  json.RawMessage `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	data, shapes := map[string]json.RawMessage{}, map[string][]int{}
	for _, o := range out.Outputs {
		data[o.Name], shapes[o.Name] = o.Data, o.Shape
	}
	return data, shapes, resp.StatusCode, string(b)
}

// TestTokenizerModel serves kiln_tokenizer models over HTTP on loopback:
// texts in, padded ids, attention mask and token types out (hand-worked
// ids of serve/tokenizer/testdata/cases.json), pairs of texts for a
// cross-encoder, truncation and padding to max_length, ids back to text;
// bad requests are 400 naming the input.
func TestTokenizerModel(t *testing.T) {
	repo := tokenizerRepo(t, map[string]string{"tok": tokEncodeConfig, "pair": tokPairConfig, "fixed": tokFixedConfig, "detok": tokDecodeConfig, "single": tokSingleConfig})
	s := serve.New(serve.Options{Repository: repo})
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	t.Cleanup(ts.Close)

	texts := func(name string, ss ...string) string {
		b, _ := json.Marshal(ss)
		return fmt.Sprintf(`{"name":%q,"datatype":"BYTES","shape":[%d,1],"data":%s}`, name, len(ss), b)
	}
	tests := []struct {
		name, model, body string
		want              map[string]string
		shape             []int
	}{
		{"batch padded to its longest", "tok", `{"inputs":[` + texts("TEXT", "The quick brown fox jumps over the lazy dog.", "Café!") + `]}`,
			map[string]string{
				"input_ids":      "[2,5,6,7,8,9,10,12,5,13,14,16,3,2,21,17,3,0,0,0,0,0,0,0,0,0]",
				"attention_mask": "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0]",
				"token_type_ids": "[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]",
			}, []int{2, 13}},
		{"pair", "pair", `{"inputs":[` + texts("QUERY", "the fox") + `,` + texts("PASSAGE", "jumped!") + `]}`,
			map[string]string{"input_ids": "[2,5,8,3,9,11,17,3]", "token_type_ids": "[0,0,0,0,1,1,1,1]"}, []int{1, 8}},
		{"max_length", "fixed", `{"inputs":[` + texts("TEXT", "The quick brown fox jumps over the lazy dog.", "[MASK] dog") + `]}`,
			map[string]string{"input_ids": "[2,5,6,7,8,3,2,4,14,3,0,0]", "attention_mask": "[1,1,1,1,1,1,1,1,1,1,0,0]"}, []int{2, 6}},
		{"not batched, INT32, no special tokens", "single", `{"inputs":[{"name":"TEXT","datatype":"BYTES","shape":[1],"data":["UNAFFABLE"]}]}`,
			map[string]string{"input_ids": "[18,19,20]"}, []int{3}},
		{"decode", "detok", `{"inputs":[{"name":"IDS","datatype":"INT64","shape":[2,7],"data":[2,5,6,9,10,16,3,2,24,25,26,22,23,3]}]}`,
			map[string]string{"TEXT": `["the quick jumps.","john johanson's"]`}, []int{2, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, shapes, code, body := inferJSON(t, ts.URL, tc.model, tc.body)
			if code != http.StatusOK {
				t.Fatalf("HTTP %d: %s", code, body)
			}
			for name, want := range tc.want {
				if string(data[name]) != want {
					t.Errorf("%s = %s, want %s", name, data[name], want)
				}
				if !slices.Equal(shapes[name], tc.shape) {
					t.Errorf("%s: shape %v, want %v", name, shapes[name], tc.shape)
				}
			}
		})
	}

	t.Run("tokenizer.json in the model folder", func(t *testing.T) {
		repo := tokenizerRepo(t, map[string]string{"tok": tokEncodeConfig})
		if err := os.Rename(filepath.Join(repo, "tok", "1", "tokenizer.json"), filepath.Join(repo, "tok", "tokenizer.json")); err != nil {
			t.Fatal(err)
		}
		s := serve.New(serve.Options{Repository: repo})
		defer s.Shutdown(context.Background())
		if err := s.Load("tok"); err != nil {
			t.Fatal(err)
		}
		in := &tensor.Tensor{DType: tensor.String, Shape: []int{1, 1}, Strings: []string{"UNAFFABLE"}}
		resp, err := s.Infer(context.Background(), &serve.InferRequest{Model: "tok", Inputs: map[string]*tensor.Tensor{"TEXT": in}, Outputs: []string{"input_ids"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Outputs[0].Tensor.Int64s(); !slices.Equal(got, []int64{2, 18, 19, 20, 3}) {
			t.Errorf("got %v, want [2 18 19 20 3]", got)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		// a pair model without its second text
		_, _, code, body := inferJSON(t, ts.URL, "pair", `{"inputs":[`+texts("QUERY", "the fox")+`]}`)
		if code != http.StatusBadRequest || !strings.Contains(body, "PASSAGE") {
			t.Errorf("missing pair input: HTTP %d %s, want 400 naming PASSAGE", code, body)
		}
		_, _, code, body = inferJSON(t, ts.URL, "detok", `{"inputs":[{"name":"IDS","datatype":"INT64","shape":[1,2],"data":[5,4096]}]}`)
		if code != http.StatusBadRequest || !strings.Contains(body, "4096") {
			t.Errorf("unknown id: HTTP %d %s, want 400 naming the id", code, body)
		}
		// text that is not UTF-8: JSON cannot carry it, binary data can
		raw := []byte{4, 0, 0, 0, 'c', 'a', 'f', 0xe9}
		hdr := fmt.Sprintf(`{"inputs":[{"name":"TEXT","datatype":"BYTES","shape":[1,1],"parameters":{"binary_data_size":%d}}]}`, len(raw))
		req, _ := http.NewRequest("POST", ts.URL+"/v2/models/tok/infer", strings.NewReader(hdr+string(raw)))
		req.Header.Set("Inference-Header-Content-Length", fmt.Sprint(len(hdr)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `input \"TEXT\": text 0: not UTF-8 (byte 3)`) {
			t.Errorf("binary text not UTF-8: HTTP %d %s, want 400 naming the input and the byte", resp.StatusCode, b)
		}
		bad := &tensor.Tensor{DType: tensor.String, Shape: []int{2, 1}, Strings: []string{"fine", "caf\xe9"}}
		_, err = s.Infer(context.Background(), &serve.InferRequest{Model: "tok", Inputs: map[string]*tensor.Tensor{"TEXT": bad}})
		if !errors.Is(err, serve.ErrInvalid) || !strings.Contains(err.Error(), `input "TEXT": text 1: not UTF-8 (byte 3)`) {
			t.Errorf("not UTF-8: %v, want ErrInvalid naming the input, the text and the byte", err)
		}
	})
}

// TestTokenizerModelConfigErrors: a kiln_tokenizer model it cannot run
// does not load, and the error names the field or the file.
func TestTokenizerModelConfigErrors(t *testing.T) {
	tests := []struct {
		name, config, want string
		noFile             bool
	}{
		{"no tokenizer.json", tokEncodeConfig, "1/tokenizer.json: no such file", true},
		{"input type", strings.Replace(tokEncodeConfig, "TYPE_STRING", "TYPE_FP32", 1), `input "TEXT": data_type TYPE_FP32, want TYPE_STRING`, false},
		{"input dims", strings.Replace(tokEncodeConfig, "dims: [ 1 ]", "dims: [ 2 ]", 1), `input "TEXT": dims [2], want [ 1 ]`, false},
		{"output name", strings.Replace(tokEncodeConfig, `"attention_mask"`, `"mask"`, 1), `output "mask": want outputs named input_ids, attention_mask or token_type_ids`, false},
		{"output type", strings.Replace(tokEncodeConfig, "TYPE_INT32", "TYPE_FP32", 1), `output "token_type_ids": data_type TYPE_FP32, want TYPE_INT64 or TYPE_INT32`, false},
		{"no ids", strings.Replace(tokEncodeConfig, `{ name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },`, "", 1), "output: input_ids is missing", false},
		{"fixed dims without padding", strings.Replace(tokFixedConfig, `parameters { key: "padding" value { string_value: "max_length" } }`, "", 1), `output "input_ids": dims [6], want [ -1 ]`, false},
		{"max_length", strings.Replace(tokFixedConfig, `string_value: "6"`, `string_value: "six"`, 1), `parameters max_length: "six"`, false},
		{"max_length below the special tokens", strings.Replace(tokFixedConfig, `string_value: "6"`, `string_value: "2"`, 1), `parameters max_length: 2 leaves no room beside the 2 special tokens`, false},
		{"padding", strings.Replace(tokFixedConfig, `string_value: "max_length"`, `string_value: "all"`, 1), `parameters padding: "all" (want longest or max_length)`, false},
		{"padding without max_length", strings.Replace(tokEncodeConfig, "]\n", "]\nparameters { key: \"padding\" value { string_value: \"max_length\" } }\n", 1), "max_length padding needs parameters max_length", false},
		{"truncation", strings.Replace(tokFixedConfig, "]\n", "]\nparameters { key: \"truncation\" value { string_value: \"middle\" } }\n", 1), `parameters truncation: "middle"`, false},
		{"tokenizer file outside", strings.Replace(tokEncodeConfig, "]\n", "]\nparameters { key: \"tokenizer_file\" value { string_value: \"../x.json\" } }\n", 1), `tokenizer_file: "../x.json" must name a file inside the version folder`, false},
		{"decode output", strings.Replace(tokDecodeConfig, "TYPE_STRING", "TYPE_INT64", 1), "a decoding tokenizer has one output of data_type TYPE_STRING", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// the folder names the model
			cfg := regexp.MustCompile(`(?m)^name: .*\n`).ReplaceAllString(tc.config, "")
			repo := tokenizerRepo(t, map[string]string{"m": cfg})
			if tc.noFile {
				os.Remove(filepath.Join(repo, "m", "1", "tokenizer.json"))
			}
			s := serve.New(serve.Options{Repository: repo})
			defer s.Shutdown(context.Background())
			err := s.Load("m")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestTokenizerRepository serves ./testdata/tokenizer, the README's
// example of kiln_tokenizer models, and checks the responses the README
// shows, byte for byte.
func TestTokenizerRepository(t *testing.T) {
	s := serve.New(serve.Options{Repository: filepath.Join("testdata", "tokenizer")})
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	t.Cleanup(ts.Close)
	for _, c := range []struct {
		model, body, want string
		code              int
	}{
		{"tokenizer", `{"inputs":[{"name":"TEXT","datatype":"BYTES","shape":[2,1],"data":["The quick brown fox jumps over the lazy dog.","Café!"]}]}`,
			`{"id":"","model_name":"tokenizer","model_version":"1","outputs":[{"name":"input_ids","datatype":"INT64","shape":[2,13],"data":[2,5,6,7,8,9,10,12,5,13,14,16,3,2,21,17,3,0,0,0,0,0,0,0,0,0]},{"name":"attention_mask","datatype":"INT64","shape":[2,13],"data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0]}]}`, 200},
		{"pair_tokenizer", `{"inputs":[{"name":"QUERY","datatype":"BYTES","shape":[1,1],"data":["the fox"]},{"name":"PASSAGE","datatype":"BYTES","shape":[1,1],"data":["jumped over the lazy dog!"]}]}`,
			`{"id":"","model_name":"pair_tokenizer","model_version":"1","outputs":[{"name":"input_ids","datatype":"INT64","shape":[1,8],"data":[2,5,8,3,9,11,12,3]},{"name":"token_type_ids","datatype":"INT64","shape":[1,8],"data":[0,0,0,0,1,1,1,1]}]}`, 200},
		{"detokenizer", `{"inputs":[{"name":"IDS","datatype":"INT64","shape":[1,8],"data":[2,5,8,3,9,11,17,3]}]}`,
			`{"id":"","model_name":"detokenizer","model_version":"1","outputs":[{"name":"TEXT","datatype":"BYTES","shape":[1,1],"data":["the fox jumped!"]}]}`, 200},
	} {
		resp, err := http.Post(ts.URL+"/v2/models/"+c.model+"/infer", "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || strings.TrimSpace(string(b)) != c.want {
			t.Errorf("%s: HTTP %d %s\nwant %d %s", c.model, resp.StatusCode, b, c.code, c.want)
		}
	}
}
