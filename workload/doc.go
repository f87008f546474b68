// Package workload describes what the KV-cache allocator is asked to serve:
// the models (how many bytes of K and V one token costs in each layer, how
// large the weights are) and the request traces (how many prompt tokens each
// request prefills and how many it then decodes).
//
// Traces come from two places: Synthetic draws a seeded, reproducible trace
// whose length distribution resembles the public arxiv summarization traces
// that vAttention and Sarathi-Serve were evaluated on, and LoadCSV reads those
// traces themselves (the Sarathi-Serve / metron CSV format).
package workload
