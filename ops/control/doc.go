// Package control implements the ONNX control-flow operators If, Loop and
// Scan, which run subgraphs through ops.Env.RunGraph, and the random
// generators RandomNormal, RandomUniform, RandomNormalLike,
// RandomUniformLike, Bernoulli and Multinomial, which are
// ops.NonDeterministic so that they are never folded at load time.
package control
