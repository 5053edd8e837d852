package tokenizer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// preTokenizer splits normalized text into words (tokenizer.json
// "pre_tokenizer"); the model tokenizes each word on its own.
type preTokenizer interface {
	split(s string) []string
}

func parsePreTokenizer(r json.RawMessage, field string) (preTokenizer, error) {
	if isNull(r) {
		return nil, nil
	}
	typ, err := typeOf(r, field)
	if err != nil {
		return nil, err
	}
	bad := func(err error) error { return fmt.Errorf("%w: %s: %v", ErrFormat, field, err) }
	switch typ {
	case "BertPreTokenizer":
		return bertPre{}, nil
	case "Whitespace":
		return whitespacePre{}, nil
	case "WhitespaceSplit":
		return whitespaceSplit{}, nil
	case "Punctuation":
		return punctuationPre{}, nil
	case "Digits":
		v := struct {
			Individual bool `json:"individual_digits"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, bad(err)
		}
		return digitsPre{v.Individual}, nil
	case "ByteLevel":
		v := struct {
			AddPrefixSpace *bool `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, bad(err)
		}
		bl := byteLevelPre{prefixSpace: true, regex: true}
		if v.AddPrefixSpace != nil {
			bl.prefixSpace = *v.AddPrefixSpace
		}
		if v.UseRegex != nil {
			bl.regex = *v.UseRegex
		}
		return bl, nil
	case "Split":
		v := struct {
			Pattern  pattern `json:"pattern"`
			Behavior string  `json:"behavior"`
			Invert   bool    `json:"invert"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, bad(err)
		}
		if v.Invert {
			return nil, fmt.Errorf("%w: %s.invert true is not supported", ErrFormat, field)
		}
		re, err := v.Pattern.compile(field)
		if err != nil {
			return nil, err
		}
		switch v.Behavior {
		case "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext":
		default:
			return nil, fmt.Errorf("%w: %s.behavior %q is not supported (Removed, Isolated, MergedWithPrevious, MergedWithNext are)", ErrFormat, field, v.Behavior)
		}
		return splitPre{re, v.Behavior}, nil
	case "Sequence":
		v := struct {
			PreTokenizers []json.RawMessage `json:"pretokenizers"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, bad(err)
		}
		var seq preTokenizers
		for i, sub := range v.PreTokenizers {
			p, err := parsePreTokenizer(sub, fmt.Sprintf("%s.pretokenizers[%d]", field, i))
			if err != nil {
				return nil, err
			}
			if p != nil {
				seq = append(seq, p)
			}
		}
		return seq, nil
	}
	return nil, fmt.Errorf("%w: %s.type %q is not supported (BertPreTokenizer, ByteLevel, Whitespace, WhitespaceSplit, Punctuation, Digits, Split, Sequence are)", ErrFormat, field, typ)
}

type preTokenizers []preTokenizer

func (ps preTokenizers) split(s string) []string {
	words := []string{s}
	for _, p := range ps {
		var next []string
		for _, w := range words {
			next = append(next, p.split(w)...)
		}
		words = next
	}
	return words
}

// bertPre splits on whitespace (dropped) and around each punctuation
// character (kept, alone).
type bertPre struct{}

func (bertPre) split(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		switch {
		case unicode.IsSpace(r):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		case isBertPunct(r):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			out = append(out, s[i:i+utf8.RuneLen(r)])
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// whitespacePre is the pattern \w+|[^\w\s]+.
type whitespacePre struct{}

func (whitespacePre) split(s string) []string {
	var out []string
	start, kind := -1, 0 // kind 1: word characters, 2: others
	for i, r := range s {
		k := 2
		if unicode.IsSpace(r) {
			k = 0
		} else if isWordChar(r) {
			k = 1
		}
		if k != kind && start >= 0 {
			out = append(out, s[start:i])
			start = -1
		}
		if k != 0 && start < 0 {
			start = i
		}
		kind = k
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

type whitespaceSplit struct{}

func (whitespaceSplit) split(s string) []string { return strings.Fields(s) }

// punctuationPre isolates each punctuation character.
type punctuationPre struct{}

func (punctuationPre) split(s string) []string {
	var out []string
	start := 0
	for i, r := range s {
		if isBertPunct(r) {
			if i > start {
				out = append(out, s[start:i])
			}
			n := utf8.RuneLen(r)
			out = append(out, s[i:i+n])
			start = i + n
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// digitsPre splits runs of digits from the rest (each digit alone when
// individual).
type digitsPre struct{ individual bool }

func (d digitsPre) split(s string) []string {
	var out []string
	start, digit := 0, false
	for i, r := range s {
		isD := unicode.IsDigit(r)
		if i > start && (isD != digit || isD && d.individual) {
			out = append(out, s[start:i])
			start = i
		}
		digit = isD
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// splitPre splits around the matches of a pattern.
type splitPre struct {
	re       *regexp.Regexp
	behavior string
}

func (sp splitPre) split(s string) []string {
	var out []string
	last := 0
	pendingMatch := "" // MergedWithNext: the match waiting for what follows
	for _, m := range sp.re.FindAllStringIndex(s, -1) {
		if m[0] == m[1] {
			continue
		}
		before, match := s[last:m[0]], s[m[0]:m[1]]
		switch sp.behavior {
		case "Removed":
			if before != "" {
				out = append(out, before)
			}
		case "Isolated":
			if before != "" {
				out = append(out, before)
			}
			out = append(out, match)
		case "MergedWithPrevious":
			out = append(out, before+match)
		case "MergedWithNext":
			if pendingMatch+before != "" {
				out = append(out, pendingMatch+before)
			}
			pendingMatch = match
		}
		last = m[1]
	}
	if rest := pendingMatch + s[last:]; rest != "" {
		out = append(out, rest)
	}
	return out
}

// byteLevelPre is GPT-2's pre-tokenizer: a space in front (prefixSpace)
// when the text has none, GPT-2's split pattern (regex), and each piece's
// UTF-8 bytes written as the printable characters of the byte-to-unicode
// map.
type byteLevelPre struct {
	prefixSpace, regex bool
}

func (b byteLevelPre) split(s string) []string {
	if b.prefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	pieces := []string{s}
	if b.regex {
		pieces = gpt2Split(s)
	}
	for i, p := range pieces {
		pieces[i] = bytesToUnicode(p)
	}
	return pieces
}

// gpt2Split splits s as GPT-2's pattern does:
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// (the alternatives tried in order at each place, leftmost first).
func gpt2Split(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		n := gpt2Match(s[i:])
		out = append(out, s[i:i+n])
		i += n
	}
	return out
}

// gpt2Match returns the length of the pattern's match at the start of s
// (at least one character).
func gpt2Match(s string) int {
	if s[0] == '\'' {
		for _, c := range []string{"s", "t", "re", "ve", "m", "ll", "d"} {
			if strings.HasPrefix(s[1:], c) {
				return 1 + len(c)
			}
		}
	}
	// ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
	j := 0
	if s[0] == ' ' {
		j = 1
	}
	if j < len(s) {
		r, _ := utf8.DecodeRuneInString(s[j:])
		var class func(rune) bool
		switch {
		case unicode.IsLetter(r):
			class = unicode.IsLetter
		case unicode.IsNumber(r):
			class = unicode.IsNumber
		case !unicode.IsSpace(r):
			class = func(r rune) bool { return !unicode.IsSpace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r) }
		}
		if class != nil {
			return j + runLen(s[j:], class)
		}
	}
	// '\s+(?!\S)|\s+': a run of whitespace, less its last character when
	// other text follows (that character then starts the next piece)
	r, size := utf8.DecodeRuneInString(s)
	if !unicode.IsSpace(r) {
		return size // not reached: every character is in some class above
	}
	n := runLen(s, unicode.IsSpace)
	if n == len(s) {
		return n
	}
	_, last := utf8.DecodeLastRuneInString(s[:n])
	if n-last > 0 {
		return n - last
	}
	return n
}

// runLen is the length in bytes of the leading characters of s in class.
func runLen(s string, class func(rune) bool) int {
	for i, r := range s {
		if !class(r) {
			return i
		}
	}
	return len(s)
}

// byteRune and runeByte are GPT-2's byte-to-unicode map: the printable
// bytes stand for themselves, the others (control characters, space,
// 0x7f-0xa0, 0xad) for the characters from U+0100 on, in order.
var (
	byteRune [256]rune
	runeByte = map[rune]byte{}
)

func init() {
	n := 0
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xa1 && b <= 0xac || b >= 0xae && b <= 0xff {
			byteRune[b] = rune(b)
		} else {
			byteRune[b] = rune(256 + n)
			n++
		}
		runeByte[byteRune[b]] = byte(b)
	}
}

func bytesToUnicode(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteRune[s[i]])
	}
	return b.String()
}
