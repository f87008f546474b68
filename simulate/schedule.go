package simulate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

type request struct {
	prefill, decode int
	generated       int // output tokens so far
	slot            int
}

// length is the KV length the request has when its last token is in.
func (r *request) length() int { return r.prefill + r.generated }

// schedule runs the trace through mem and fills res, counting in
// res.Skipped the requests that can never fit.
func schedule(ctx context.Context, cfg *Config, mem memory, res *Result, progress func(done, total int)) error {
	start := time.Now()
	reqs := make([]request, 0, len(cfg.Trace.Requests))
	for _, r := range cfg.Trace.Requests {
		// The last token's KV is never written: a request's longest KV is
		// prefill + decode - 1 tokens.
		if r.Prefill <= 0 || r.Decode <= 0 || r.Prefill+r.Decode-1 > cfg.MaxContext {
			res.Skipped++
			continue
		}
		reqs = append(reqs, request{prefill: r.Prefill, decode: r.Decode, slot: -1})
	}
	queue := make([]int, len(reqs))
	for i := range queue {
		queue[i] = i
	}
	var running []int // newest last
	lens := make([]int, cfg.MaxBatch)
	u := mem.usage()
	budget := u.free + u.mapped + u.idle
	watermark := uint64(float64(budget) * cfg.Watermark)
	var sumMapped, sumLive, sumBatch float64
	completed := 0

	finish := func(ri int) error {
		r := &reqs[ri]
		lens[r.slot] = 0
		err := mem.free(r.slot)
		r.slot = -1
		return err
	}
	for len(queue) > 0 || len(running) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Requests whose last token came out leave.
		kept := running[:0]
		for _, ri := range running {
			if reqs[ri].generated >= reqs[ri].decode {
				if err := finish(ri); err != nil {
					return err
				}
				completed++
				continue
			}
			kept = append(kept, ri)
		}
		running = kept
		// Admit: prefill of waiting requests, oldest first.
		for len(queue) > 0 && len(running) < cfg.MaxBatch {
			ri := queue[0]
			r := &reqs[ri]
			slot, err := mem.alloc(r.length())
			if err != nil {
				return fmt.Errorf("alloc: %w", err)
			}
			lens[slot] = r.length()
			err = mem.step(lens, true)
			if err == nil && mem.usage().free < watermark && len(running) > 0 {
				err = errNoMemory
			}
			if err != nil {
				lens[slot] = 0
				if ferr := mem.free(slot); ferr != nil {
					return ferr
				}
				if !errors.Is(err, errNoMemory) {
					return err
				}
				if len(running) == 0 {
					// Alone and still too big: it can never run.
					queue = queue[1:]
					res.Skipped++
					continue
				}
				break
			}
			r.slot = slot
			r.generated++ // the prefill pass emits the first token
			queue = queue[1:]
			running = append(running, ri)
		}
		res.MaxBatchReached = max(res.MaxBatchReached, len(running))
		if len(running) == 0 {
			continue
		}
		// Decode: every running request appends its last token.
		for _, ri := range running {
			if reqs[ri].generated < reqs[ri].decode { // a finished one leaves next iteration
				lens[reqs[ri].slot] = reqs[ri].length()
			}
		}
		for {
			err := mem.step(lens, false)
			if err == nil {
				break
			}
			if !errors.Is(err, errNoMemory) {
				return err
			}
			// Preempt the newest request; it starts over later.
			victim := running[len(running)-1]
			running = running[:len(running)-1]
			if err := finish(victim); err != nil {
				return err
			}
			res.Preemptions++
			queue = slices.Insert(queue, 0, victim)
			if len(running) == 0 {
				break
			}
		}
		if len(running) == 0 {
			continue // everything was preempted: no step ran
		}
		for _, ri := range running {
			if reqs[ri].generated < reqs[ri].decode {
				reqs[ri].generated++
			}
		}
		u := mem.usage()
		res.Steps++
		res.PeakMappedBytes = max(res.PeakMappedBytes, u.mapped)
		res.PeakLiveBytes = max(res.PeakLiveBytes, u.live)
		res.PeakIdleBytes = max(res.PeakIdleBytes, u.idle)
		sumMapped += float64(u.mapped)
		sumBatch += float64(len(running))
		sumLive += float64(u.live)
		if res.Steps%256 == 0 {
			progress(completed, len(reqs))
		}
	}
	progress(completed, len(reqs))
	res.Completed = completed
	if res.Steps > 0 {
		res.MeanMappedBytes = uint64(sumMapped / float64(res.Steps))
		res.MeanLiveBytes = uint64(sumLive / float64(res.Steps))
		res.MeanBatch = sumBatch / float64(res.Steps)
	}
	if sumMapped > 0 {
		res.WasteFraction = 1 - sumLive/sumMapped
	}
	res.WallSeconds = time.Since(start).Seconds()
	return nil
}
