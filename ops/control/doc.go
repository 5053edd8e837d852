// Package control implements the ONNX control-flow operators If, Loop and Scan, which run subgraphs.
package control
