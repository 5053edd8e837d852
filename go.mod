module github.com/kilnai/kiln

go 1.26.8
