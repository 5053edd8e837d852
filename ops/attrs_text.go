package ops

import "github.com/kilnai/kiln/ir"

// Typed attributes of the string ops (ops/math: StringNormalizer,
// TfIdfVectorizer), read by their CPU kernels (see Def.Attrs).

// StringNormalizerAttrs are StringNormalizer's attributes.
type StringNormalizerAttrs struct {
	// CaseChange is "case_change_action": "LOWER", "UPPER" or "NONE" (the
	// default).
	CaseChange string
	// CaseSensitive is "is_case_sensitive" not 0 (0 by default): whether
	// the stopwords match case-sensitively.
	CaseSensitive bool
	// Stopwords is "stopwords" (none by default).
	Stopwords []string
	// Locale is "locale" ("" by default): kiln changes case with Go's
	// Unicode rules whatever the locale.
	Locale string
}

// ParseStringNormalizerAttrs reads a StringNormalizer node's attributes.
func ParseStringNormalizerAttrs(n *ir.Node, opset int64) (StringNormalizerAttrs, error) {
	a := AttrsOf(n)
	r := StringNormalizerAttrs{
		CaseChange:    a.OneOf("case_change_action", a.String("case_change_action", "NONE"), "LOWER", "UPPER", "NONE"),
		CaseSensitive: a.Int("is_case_sensitive", 0) != 0,
		Stopwords:     a.Strings("stopwords", nil),
		Locale:        a.String("locale", ""),
	}
	if a.Err() != nil {
		return StringNormalizerAttrs{}, a.Err()
	}
	return r, nil
}

// TfIdfVectorizerAttrs are TfIdfVectorizer's attributes, checked for
// consistency: the pool (exactly one of PoolInt64s and PoolStrings) is
// split by NgramCounts into runs of 1-grams, 2-grams, ...; NgramIndexes
// (and Weights, when given) have one entry per n-gram of the pool.
type TfIdfVectorizerAttrs struct {
	// Mode is the required "mode": "TF", "IDF" or "TFIDF".
	Mode string
	// MinGramLength, MaxGramLength are the required "min_gram_length"
	// and "max_gram_length" (1 <= min <= max <= 1024).
	MinGramLength, MaxGramLength int64
	// MaxSkipCount is "max_skip_count" (0 by default, at most 2^20).
	MaxSkipCount int64
	// NgramCounts is "ngram_counts": where the n-grams of each length
	// start in the pool.
	NgramCounts []int64
	// NgramIndexes is "ngram_indexes": each n-gram's output column (0 to
	// 2^24 - 1).
	NgramIndexes []int64
	// PoolInt64s, PoolStrings are "pool_int64s" and "pool_strings".
	PoolInt64s  []int64
	PoolStrings []string
	// Weights is "weights" (nil: 1 for every n-gram).
	Weights []float32
}

// ParseTfIdfVectorizerAttrs reads a TfIdfVectorizer node's attributes.
func ParseTfIdfVectorizerAttrs(n *ir.Node, opset int64) (TfIdfVectorizerAttrs, error) {
	a := AttrsOf(n)
	r := TfIdfVectorizerAttrs{
		Mode:          a.OneOf("mode", a.String("mode", ""), "TF", "IDF", "TFIDF"),
		MinGramLength: a.Int("min_gram_length", 0),
		MaxGramLength: a.Int("max_gram_length", 0),
		MaxSkipCount:  a.Int("max_skip_count", 0),
		NgramIndexes:  a.Ints("ngram_indexes", nil),
		Weights:       a.Floats("weights", nil),
		NgramCounts:   a.Ints("ngram_counts", nil),
		PoolInt64s:    a.Ints("pool_int64s", nil),
		PoolStrings:   a.Strings("pool_strings", nil),
	}
	if a.Err() != nil {
		return TfIdfVectorizerAttrs{}, a.Err()
	}
	fail := func(name, format string, args ...any) (TfIdfVectorizerAttrs, error) {
		a.Fail(name, format, args...)
		return TfIdfVectorizerAttrs{}, a.Err()
	}
	if r.MinGramLength < 1 || r.MaxGramLength < r.MinGramLength || r.MaxGramLength > 1024 {
		return fail("max_gram_length", "gram lengths %d..%d", r.MinGramLength, r.MaxGramLength)
	}
	if r.MaxSkipCount < 0 || r.MaxSkipCount > 1<<20 {
		return fail("max_skip_count", "%d", r.MaxSkipCount)
	}
	if (r.PoolInt64s == nil) == (r.PoolStrings == nil) {
		return fail("pool_int64s", "exactly one of pool_int64s and pool_strings must be set")
	}
	pool := int64(len(r.PoolInt64s) + len(r.PoolStrings))
	grams := 0
	for g, start := range r.NgramCounts {
		end := pool
		if g+1 < len(r.NgramCounts) {
			end = r.NgramCounts[g+1]
		}
		size := int64(g + 1)
		if start < 0 || end < start || end > pool || (end-start)%size != 0 {
			return fail("ngram_counts", "%v does not split a pool of %d items into %d-grams", r.NgramCounts, pool, size)
		}
		grams += int((end - start) / size)
	}
	if len(r.NgramIndexes) != grams {
		return fail("ngram_indexes", "%d entries for %d n-grams", len(r.NgramIndexes), grams)
	}
	if r.Weights != nil && len(r.Weights) != grams {
		return fail("weights", "%d entries for %d n-grams", len(r.Weights), grams)
	}
	for _, i := range r.NgramIndexes {
		if i < 0 || i >= 1<<24 {
			return fail("ngram_indexes", "index %d out of range", i)
		}
	}
	return r, nil
}
