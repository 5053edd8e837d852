package tokenizer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites text before it is split (tokenizer.json
// "normalizer").
type normalizer interface {
	normalize(s string) string
}

// pattern is a Replace or Split pattern: a literal string or a regular
// expression.
type pattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// compile returns the pattern as a regexp (a literal one quoted).
func (p pattern) compile(field string) (*regexp.Regexp, error) {
	switch {
	case p.String != nil:
		return regexp.MustCompile(regexp.QuoteMeta(*p.String)), nil
	case p.Regex != nil:
		re, err := regexp.Compile(*p.Regex)
		if err != nil {
			return nil, fmt.Errorf("%w: %s.pattern.Regex %q: Go's regexp cannot compile it: %v", ErrFormat, field, *p.Regex, err)
		}
		return re, nil
	}
	return nil, fmt.Errorf("%w: %s.pattern: want String or Regex", ErrFormat, field)
}

func parseNormalizer(r json.RawMessage, field string) (normalizer, error) {
	if isNull(r) {
		return nil, nil
	}
	typ, err := typeOf(r, field)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "BertNormalizer":
		v := struct {
			CleanText          *bool `json:"clean_text"`
			HandleChineseChars *bool `json:"handle_chinese_chars"`
			StripAccents       *bool `json:"strip_accents"`
			Lowercase          *bool `json:"lowercase"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, field, err)
		}
		on := func(b *bool, def bool) bool {
			if b == nil {
				return def
			}
			return *b
		}
		n := bertNormalizer{clean: on(v.CleanText, true), chinese: on(v.HandleChineseChars, true), lower: on(v.Lowercase, true)}
		// strip_accents null follows lowercase, as BERT's uncased models do
		n.strip = on(v.StripAccents, n.lower)
		return n, nil
	case "Lowercase":
		return lowercase{}, nil
	case "NFD":
		return unicodeForm{norm.NFD}, nil
	case "NFKD":
		return unicodeForm{norm.NFKD}, nil
	case "NFC":
		return unicodeForm{norm.NFC}, nil
	case "NFKC":
		return unicodeForm{norm.NFKC}, nil
	case "StripAccents":
		return stripAccents{}, nil
	case "Strip":
		v := struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, field, err)
		}
		return strip(v), nil
	case "Prepend":
		v := struct {
			Prepend string `json:"prepend"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, field, err)
		}
		return prepend(v.Prepend), nil
	case "Replace":
		v := struct {
			Pattern pattern `json:"pattern"`
			Content string  `json:"content"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, field, err)
		}
		re, err := v.Pattern.compile(field)
		if err != nil {
			return nil, err
		}
		return replace{re, v.Content}, nil
	case "Sequence":
		v := struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, field, err)
		}
		var seq normalizers
		for i, sub := range v.Normalizers {
			n, err := parseNormalizer(sub, fmt.Sprintf("%s.normalizers[%d]", field, i))
			if err != nil {
				return nil, err
			}
			if n != nil {
				seq = append(seq, n)
			}
		}
		return seq, nil
	}
	return nil, fmt.Errorf("%w: %s.type %q is not supported (BertNormalizer, Lowercase, NFD, NFKD, NFC, NFKC, StripAccents, Strip, Prepend, Replace, Sequence are)", ErrFormat, field, typ)
}

type normalizers []normalizer

func (ns normalizers) normalize(s string) string {
	for _, n := range ns {
		s = n.normalize(s)
	}
	return s
}

// bertNormalizer is BERT's BasicTokenizer cleanup: control characters
// dropped and whitespace made spaces (clean), CJK ideographs spaced
// (chinese), accents stripped after NFD (strip), lowercased (lower).
type bertNormalizer struct {
	clean, chinese, strip, lower bool
}

func (n bertNormalizer) normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		if n.clean {
			if r == 0 || r == 0xfffd || isControl(r) {
				continue
			}
			if isWhitespace(r) {
				r = ' '
			}
		}
		if n.chinese && isCJK(r) {
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
			continue
		}
		b.WriteRune(r)
	}
	s = b.String()
	if n.strip && !isASCII(s) {
		// ASCII has no accents to strip (and is its own NFD)
		s = stripAccents{}.normalize(s)
	}
	if n.lower {
		s = strings.ToLower(s)
	}
	return s
}

type lowercase struct{}

func (lowercase) normalize(s string) string { return strings.ToLower(s) }

type unicodeForm struct{ f norm.Form }

func (u unicodeForm) normalize(s string) string { return u.f.String(s) }

// stripAccents decomposes (NFD) and drops the nonspacing marks (Mn).
type stripAccents struct{}

func (stripAccents) normalize(s string) string {
	s = norm.NFD.String(s)
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Mn, r) {
			return -1
		}
		return r
	}, s)
}

type strip struct{ Left, Right bool }

func (st strip) normalize(s string) string {
	if st.Left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if st.Right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

type prepend string

func (p prepend) normalize(s string) string {
	if s == "" {
		return s
	}
	return string(p) + s
}

type replace struct {
	re   *regexp.Regexp
	with string
}

func (r replace) normalize(s string) string { return r.re.ReplaceAllLiteralString(s, r.with) }

// isWhitespace is BERT's whitespace: space, tab, newline, carriage return
// and the space separators (Zs).
func isWhitespace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r':
		return true
	}
	return unicode.Is(unicode.Zs, r)
}

// isControl is BERT's control character: categories C* (unassigned code
// points too) except tab, newline and carriage return.
func isControl(r rune) bool {
	switch r {
	case '\t', '\n', '\r':
		return false
	}
	if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) {
		return true
	}
	// unassigned (Cn): in no category
	return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// isCJK reports whether r is in the CJK Unified Ideographs blocks BERT
// spaces out.
func isCJK(r rune) bool {
	return r >= 0x4e00 && r <= 0x9fff ||
		r >= 0x3400 && r <= 0x4dbf ||
		r >= 0x20000 && r <= 0x2a6df ||
		r >= 0x2a700 && r <= 0x2b73f ||
		r >= 0x2b740 && r <= 0x2b81f ||
		r >= 0x2b820 && r <= 0x2ceaf ||
		r >= 0xf900 && r <= 0xfaff ||
		r >= 0x2f800 && r <= 0x2fa1f
}

// isBertPunct is BERT's punctuation: every ASCII non-alphanumeric
// printable character and the Unicode punctuation categories (P*).
func isBertPunct(r rune) bool {
	if r >= 33 && r <= 47 || r >= 58 && r <= 64 || r >= 91 && r <= 96 || r >= 123 && r <= 126 {
		return true
	}
	return unicode.IsPunct(r)
}

// isWordChar is a regexp \w character: a letter, a mark, a digit or a
// connector punctuation (underscore).
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.No, r)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
