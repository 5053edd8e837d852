package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/tokenizer"
	"github.com/kilnai/kiln/tensor"
)

// Parameters of a kiln_tokenizer model (config.pbtxt parameters, string
// values).
const (
	// ParamTokenizerFile names the tokenizer file in each version folder,
	// or else in the model folder (default "tokenizer.json", HuggingFace's
	// format).
	ParamTokenizerFile = "tokenizer_file"
	// ParamMaxLength truncates each encoding to at most this many tokens,
	// special tokens included (default: tokenizer.json's truncation, else
	// none).
	ParamMaxLength = "max_length"
	// ParamPadding is "longest" (the default: each batch padded to its
	// longest encoding) or "max_length" (every encoding padded to
	// max_length).
	ParamPadding = "padding"
	// ParamTruncation is "longest_first" (the default), "only_first" or
	// "only_second" (which text of a pair is cut).
	ParamTruncation = "truncation"
	// ParamAddSpecialTokens is "true" (the default: [CLS] and [SEP] or
	// their like around the text) or "false".
	ParamAddSpecialTokens = "add_special_tokens"
	// ParamSkipSpecialTokens, for a decoding model, is "true" (the
	// default: special tokens left out of the text) or "false".
	ParamSkipSpecialTokens = "skip_special_tokens"
)

// Output names of an encoding kiln_tokenizer model.
const (
	TokenizerIDs   = "input_ids"
	TokenizerMask  = "attention_mask"
	TokenizerTypes = "token_type_ids"
)

// textModel is a kiln_tokenizer model. Encoding: one BYTES input of texts
// (or two, a pair of texts per batch item, for cross-encoders), one text
// per batch item, and outputs input_ids, attention_mask and token_type_ids
// (any of them, INT64 or INT32) of [batch, tokens], padded. Decoding: one
// INT64 or INT32 input of token ids [batch, tokens] and one BYTES output,
// a text per batch item.
type textModel struct {
	tok     *tokenizer.Tokenizer
	batched bool
	decode  bool
	// encoding: the inputs of the text (and the pair), the outputs'
	// types by name
	text, pair string
	outputs    map[string]tensor.DType
	opts       tokenizer.Options
	pad        tokenizer.Padding
	// decoding: the ids input and the text output
	ids, out    string
	skipSpecial bool
}

// newTextModel reads a kiln_tokenizer version's config and its
// tokenizer.json (in the version folder, else in the model folder). Errors
// name the field or the file.
func newTextModel(rm *repository.Model, version int64) (*textModel, error) {
	cfg := rm.Config
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: model %s (kiln_tokenizer): %s", repository.ErrConfig, rm.Name, fmt.Sprintf(format, args...))
	}
	params := cfg.Parameters
	file := "tokenizer.json"
	if f, ok := params[ParamTokenizerFile]; ok {
		if !filepath.IsLocal(f) {
			return nil, bad("parameters %s: %q must name a file inside the version folder", ParamTokenizerFile, f)
		}
		file = f
	}
	if rm.Dir == "" {
		return nil, bad("no model folder to read %s from", file)
	}
	// the version folder's file, else the model folder's (beside
	// config.pbtxt, shared by the versions)
	path := filepath.Join(rm.Dir, strconv.FormatInt(version, 10), file)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(rm.Dir, file)); err == nil {
			path = filepath.Join(rm.Dir, file)
		}
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w: model %s version %d (kiln_tokenizer): %w", repository.ErrModel, rm.Name, version, err)
	}
	m := &textModel{tok: tok, batched: cfg.MaxBatchSize > 0, pad: tok.Padding, skipSpecial: true}
	isInt := func(dt tensor.DType) bool { return dt == tensor.Int64 || dt == tensor.Int32 }
	boolParam := func(key string, def bool) (bool, error) {
		s, ok := params[key]
		if !ok {
			return def, nil
		}
		v, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return false, bad("parameters %s: %q (want true or false)", key, s)
		}
		return v, nil
	}
	if len(cfg.Inputs) == 1 && isInt(cfg.Inputs[0].DataType) {
		// token ids in, text out
		m.decode = true
		in := cfg.Inputs[0]
		if len(in.Dims) != 1 {
			return nil, bad("input %q: dims %v, want [ -1 ] (the token ids of one text per batch item)", in.Name, in.Dims)
		}
		if len(cfg.Outputs) != 1 || cfg.Outputs[0].DataType != tensor.String || !slices.Equal(cfg.Outputs[0].Dims, []int64{1}) {
			return nil, bad("output: a decoding tokenizer has one output of data_type TYPE_STRING and dims [ 1 ]")
		}
		m.ids, m.out = in.Name, cfg.Outputs[0].Name
		if m.skipSpecial, err = boolParam(ParamSkipSpecialTokens, true); err != nil {
			return nil, err
		}
		if _, err := tok.Decode(nil, true); err != nil {
			return nil, fmt.Errorf("%w: model %s version %d (kiln_tokenizer): %s: %w", repository.ErrModel, rm.Name, version, path, err)
		}
		return m, nil
	}
	if len(cfg.Inputs) != 1 && len(cfg.Inputs) != 2 {
		return nil, bad("input: want one input of texts (TYPE_STRING), or two for pairs of texts, or one of token ids (TYPE_INT64) to decode")
	}
	for i, in := range cfg.Inputs {
		if in.DataType != tensor.String {
			return nil, bad("input %q: data_type %s, want TYPE_STRING (UTF-8 text)", in.Name, repository.TritonType(in.DataType))
		}
		if !slices.Equal(in.Dims, []int64{1}) {
			return nil, bad("input %q: dims %v, want [ 1 ] (one text per batch item)", in.Name, in.Dims)
		}
		if i == 0 {
			m.text = in.Name
		} else {
			m.pair = in.Name
		}
	}
	addSpecial, err := boolParam(ParamAddSpecialTokens, true)
	if err != nil {
		return nil, err
	}
	m.opts.NoSpecialTokens = !addSpecial
	maxLen := 0
	if s, ok := params[ParamMaxLength]; ok {
		if maxLen, err = strconv.Atoi(strings.TrimSpace(s)); err != nil || maxLen < 1 || maxLen > 1<<20 {
			return nil, bad("parameters %s: %q (want a number of tokens, 1 to %d)", ParamMaxLength, s, 1<<20)
		}
		if n := tok.SpecialTokens(len(cfg.Inputs) == 2); maxLen <= n && !m.opts.NoSpecialTokens {
			return nil, bad("parameters %s: %d leaves no room beside the %d special tokens", ParamMaxLength, maxLen, n)
		}
		m.opts.Truncation = &tokenizer.Truncation{MaxLength: maxLen, Strategy: "longest_first"}
		if tr := tok.Truncation; tr != nil {
			m.opts.Truncation.Strategy, m.opts.Truncation.Left = tr.Strategy, tr.Left
		}
	}
	if s, ok := params[ParamTruncation]; ok {
		switch s {
		case "longest_first", "only_first", "only_second":
		default:
			return nil, bad("parameters %s: %q (want longest_first, only_first or only_second)", ParamTruncation, s)
		}
		if m.opts.Truncation == nil {
			if tok.Truncation == nil {
				return nil, bad("parameters %s: set %s too (tokenizer.json has no truncation)", ParamTruncation, ParamMaxLength)
			}
			tr := *tok.Truncation
			m.opts.Truncation = &tr
		}
		m.opts.Truncation.Strategy = s
	}
	switch p := params[ParamPadding]; p {
	case "", "longest":
		m.pad.Length = 0
	case "max_length":
		if maxLen == 0 {
			return nil, bad("parameters %s: max_length padding needs parameters %s", ParamPadding, ParamMaxLength)
		}
		m.pad.Length = maxLen
	default:
		return nil, bad("parameters %s: %q (want longest or max_length)", ParamPadding, p)
	}
	m.outputs = map[string]tensor.DType{}
	for _, o := range cfg.Outputs {
		switch o.Name {
		case TokenizerIDs, TokenizerMask, TokenizerTypes:
		default:
			return nil, bad("output %q: want outputs named %s, %s or %s", o.Name, TokenizerIDs, TokenizerMask, TokenizerTypes)
		}
		if !isInt(o.DataType) {
			return nil, bad("output %q: data_type %s, want TYPE_INT64 or TYPE_INT32", o.Name, repository.TritonType(o.DataType))
		}
		if len(o.Dims) != 1 || o.Dims[0] != -1 && (m.pad.Length == 0 || o.Dims[0] != int64(m.pad.Length)) {
			return nil, bad("output %q: dims %v, want [ -1 ] (or [ max_length ] with max_length padding)", o.Name, o.Dims)
		}
		m.outputs[o.Name] = o.DataType
	}
	if _, ok := m.outputs[TokenizerIDs]; !ok {
		return nil, bad("output: %s is missing", TokenizerIDs)
	}
	return m, nil
}

// check refuses, before the request is queued, texts that are not UTF-8
// or too long, so that a bad text fails alone rather than the batch it
// would join.
func (m *textModel) check(inputs map[string]*tensor.Tensor) error {
	if m.decode {
		return nil
	}
	for _, name := range []string{m.text, m.pair} {
		t := inputs[name]
		if name == "" || t == nil {
			continue
		}
		for i, s := range t.Strings {
			if err := checkText(s); err != nil {
				return fmt.Errorf("%w: input %q: text %d: %w", ErrInvalid, name, i, err)
			}
		}
	}
	return nil
}

func checkText(s string) error {
	if len(s) > tokenizer.MaxTextBytes {
		return fmt.Errorf("%d bytes (at most %d)", len(s), tokenizer.MaxTextBytes)
	}
	if !utf8.ValidString(s) {
		i := 0
		for i < len(s) {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return fmt.Errorf("not UTF-8 (byte %d)", i)
	}
	return nil
}

// Run tokenizes (or decodes) each batch item.
func (m *textModel) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	if m.decode {
		return m.runDecode(ctx, inputs)
	}
	t := inputs[m.text]
	if t == nil || t.DType != tensor.String {
		return nil, fmt.Errorf("%w: input %q is missing or not BYTES", ErrInvalid, m.text)
	}
	var pairs []string
	if m.pair != "" {
		p := inputs[m.pair]
		if p == nil || p.DType != tensor.String || len(p.Strings) != len(t.Strings) {
			return nil, fmt.Errorf("%w: input %q is missing, not BYTES, or not one text per text of %q", ErrInvalid, m.pair, m.text)
		}
		pairs = p.Strings
	}
	n := len(t.Strings)
	if !m.batched && n != 1 {
		return nil, fmt.Errorf("%w: input %q has %d texts, the model (max_batch_size 0) takes one", ErrInvalid, m.text, n)
	}
	encs := make([]*tokenizer.Encoding, n)
	for i, s := range t.Strings {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var pair *string
		if pairs != nil {
			pair = &pairs[i]
		}
		enc, err := m.tok.EncodeWith(s, pair, m.opts)
		if err != nil {
			if errors.Is(err, tokenizer.ErrInput) {
				return nil, fmt.Errorf("%w: input %q: text %d: %w", ErrInvalid, m.text, i, err)
			}
			return nil, err
		}
		encs[i] = enc
	}
	b := tokenizer.Pad(encs, m.pad)
	shape := []int{b.Len}
	if m.batched {
		shape = []int{n, b.Len}
	}
	out := make(map[string]*tensor.Tensor, len(m.outputs))
	for name, dt := range m.outputs {
		src := b.IDs
		switch name {
		case TokenizerMask:
			src = b.AttentionMask
		case TokenizerTypes:
			src = b.TokenTypeIDs
		}
		o := tensor.New(dt, shape...)
		if dt == tensor.Int64 {
			copy(o.Int64s(), src)
		} else {
			dst := o.Int32s()
			for i, v := range src {
				dst[i] = int32(v)
			}
		}
		out[name] = o
	}
	return out, nil
}

func (m *textModel) runDecode(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	t := inputs[m.ids]
	if t == nil || t.DType != tensor.Int64 && t.DType != tensor.Int32 {
		return nil, fmt.Errorf("%w: input %q is missing or not INT64 or INT32", ErrInvalid, m.ids)
	}
	rows, width := 1, t.Len()
	if m.batched {
		if len(t.Shape) != 2 {
			return nil, fmt.Errorf("%w: input %q has shape %v, want [batch, tokens]", ErrInvalid, m.ids, t.Shape)
		}
		rows, width = t.Shape[0], t.Shape[1]
	}
	ids := t.Ints()
	texts := make([]string, rows)
	for r := range rows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := m.tok.Decode(ids[r*width:(r+1)*width], m.skipSpecial)
		if err != nil {
			if errors.Is(err, tokenizer.ErrInput) {
				return nil, fmt.Errorf("%w: input %q: row %d: %w", ErrInvalid, m.ids, r, err)
			}
			return nil, err
		}
		texts[r] = s
	}
	shape := []int{1}
	if m.batched {
		shape = []int{rows, 1}
	}
	return map[string]*tensor.Tensor{m.out: {DType: tensor.String, Shape: shape, Strings: texts}}, nil
}
