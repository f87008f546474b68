package kvcache

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vattn/vattn/backend"
)

// layered tracks the background part of a StepLayered: how many layers of
// the current step are mapped, and how the job ended.
type layered struct {
	mu     sync.Mutex
	cond   *sync.Cond
	ready  int   // layers [0, ready) are mapped
	err    error // the job failed: layers >= ready never will be
	layers int   // layers of the current step; 0 before any StepLayered

	// A failed job's leftovers, undone by the next caller-side call once
	// the GPU work the caller submitted for the step has finished.
	undo      []backend.Mapping
	undoPages []backend.PageID
}

// StepLayered is Step for a prefill whose forward pass runs layer by layer:
// it maps layer 0's new pages (K and V) before it returns and the other
// layers' in the background, in layer order, so mapping overlaps the
// forward pass. Call WaitLayer(l) before layer l's attention reads or
// writes the cache. The next call on the cache (other than WaitLayer,
// Stats, Slots and FreeIndexes) waits for the whole step.
//
// Slots change only once every layer is mapped. If the background part
// fails, WaitLayer reports the error for the layers it did not map; the
// next call undoes the layers it did map (after the GPU work recorded at
// that point has finished) and returns the pages to the pool, so a failed
// StepLayered leaves the cache as a failed Step does.
//
// With Megacache every page holds all layers, so there is nothing to
// pipeline: StepLayered is Step, and every WaitLayer returns at once.
func (c *Cache) StepLayered(seqLens []int) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.call.Unlock()
	if c.cfg.Megacache {
		defer c.mu.Unlock()
		if err := c.step(seqLens, &c.st.fg); err != nil {
			return fmt.Errorf("step layered: %w", err)
		}
		c.afterStep(&c.st.fg)
		c.setLayers(c.cfg.Layers, c.cfg.Layers, nil)
		return nil
	}
	if err := c.checkLens(seqLens); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("step layered: %w", err)
	}
	grow, pages, maps, err := c.plan(seqLens, &c.st.fg)
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("step layered: %w", err)
	}
	// Group the mappings by layer: range r < Layers is layer r's K, the
	// rest layer r-Layers's V.
	// plan lays the mappings out range-major, n per range.
	L, n := c.cfg.Layers, len(maps)/c.layout.PagesPerIndex
	byLayer := make([][]backend.Mapping, L)
	for l := range L {
		byLayer[l] = append(append(byLayer[l], maps[l*n:(l+1)*n]...), maps[(L+l)*n:(L+l+1)*n]...)
	}
	if err := c.mapBatches(byLayer[0], &c.st.fg); err != nil {
		c.pool = append(c.pool, pages...)
		c.mu.Unlock()
		return fmt.Errorf("step layered: layer 0: %w", err)
	}
	c.setLayers(L, 1, nil)
	lens := append([]int(nil), seqLens...)
	c.mu.Unlock()
	c.busy = true
	go c.layeredJob(byLayer, grow, pages, lens)
	return nil
}

// layeredJob maps layers 1.. of a StepLayered, then records the lengths.
func (c *Cache) layeredJob(byLayer [][]backend.Mapping, grow []growth, pages []backend.PageID, lens []int) {
	defer func() { c.jobDone <- struct{}{} }()
	c.mu.Lock()
	defer c.mu.Unlock()
	done := byLayer[0]
	for l := 1; l < len(byLayer); l++ {
		if err := c.mapBatches(byLayer[l], &c.st.bg); err != nil {
			c.failLayered(l, err, done, pages)
			return
		}
		done = append(done, byLayer[l]...)
		c.setLayers(len(byLayer), l+1, nil)
	}
	c.commit(grow, pages)
	c.setLengths(lens)
	c.afterStep(&c.st.bg)
}

func (c *Cache) failLayered(l int, err error, done []backend.Mapping, pages []backend.PageID) {
	err = fmt.Errorf("step layered: layer %d: %w", l, err)
	c.st.bgErrors++
	c.st.bgLastError = err.Error()
	c.lay.mu.Lock()
	c.lay.undo, c.lay.undoPages = done, pages
	c.lay.mu.Unlock()
	c.setLayers(c.cfg.Layers, l, err)
}

func (c *Cache) setLayers(layers, ready int, err error) {
	c.lay.mu.Lock()
	defer c.lay.mu.Unlock()
	if c.lay.cond == nil {
		c.lay.cond = sync.NewCond(&c.lay.mu)
	}
	c.lay.layers, c.lay.ready, c.lay.err = layers, ready, err
	c.lay.cond.Broadcast()
}

// WaitLayer blocks until layer l's pages for the last StepLayered are
// mapped. It may be called from any goroutine while the rest of the step
// is mapped in the background. Before any StepLayered, or for a step that
// finished, it returns at once. A layer outside [0, Layers) is
// ErrLayerRange; after Close, ErrClosed.
func (c *Cache) WaitLayer(l int) error {
	if l < 0 || l >= c.cfg.Layers {
		return fmt.Errorf("wait layer: %w: %d not in [0, %d)", ErrLayerRange, l, c.cfg.Layers)
	}
	if c.closed.Load() {
		return fmt.Errorf("wait layer %d: %w", l, ErrClosed)
	}
	c.lay.mu.Lock()
	defer c.lay.mu.Unlock()
	for c.lay.layers != 0 && c.lay.ready <= l && c.lay.err == nil {
		c.lay.cond.Wait()
	}
	if c.lay.layers != 0 && c.lay.ready <= l {
		return fmt.Errorf("wait layer %d: %w", l, c.lay.err)
	}
	return nil
}

// undoLayered undoes a failed StepLayered's mappings. Called with c.mu held
// by every caller-side method, after the background job ended: by then the
// caller has submitted all the GPU work of the failed step, so a fence
// recorded now covers every reader of those pages.
func (c *Cache) undoLayered() error {
	c.lay.mu.Lock()
	maps, pages := c.lay.undo, c.lay.undoPages
	c.lay.undo, c.lay.undoPages = nil, nil
	c.lay.mu.Unlock()
	if pages == nil {
		return nil
	}
	var e backend.Epoch
	if len(maps) > 0 {
		var err error
		if e, err = c.fence.Record(); err == nil {
			c.st.fenceWaits++
			err = c.fence.Wait(c.ctx, e)
		}
		if err == nil {
			err = c.unmap(maps, e, &c.st.fg)
		}
		if err != nil {
			c.broken(err)
			return fmt.Errorf("%w: undo a failed layered step: %w", ErrBackend, err)
		}
	}
	c.pool = append(c.pool, pages...)
	c.setLayers(0, 0, nil)
	return nil
}

// mapBatches maps maps in MaxMapBatch chunks, undoing its own earlier
// chunks if a later one fails (no GPU work has seen these pages).
func (c *Cache) mapBatches(maps []backend.Mapping, ph *phase) error {
	for done := 0; done < len(maps); {
		end := min(done+c.cfg.MaxMapBatch, len(maps))
		m0, _ := c.driverCalls()
		start := time.Now()
		err := c.b.Map(maps[done:end])
		took := time.Since(start)
		m1, _ := c.driverCalls()
		ph.maps.add(1, end-done, took)
		ph.maps.driver += m1 - m0
		c.st.mapLatency.observe(took)
		if err != nil {
			err = fmt.Errorf("%w: map %d pages: %w", ErrBackend, end-done, err)
			if done > 0 {
				if uerr := c.unmap(maps[:done], 0, ph); uerr != nil {
					c.broken(uerr)
					return errors.Join(err, fmt.Errorf("undo %d mappings: %w", done, uerr))
				}
			}
			return err
		}
		done = end
	}
	return nil
}
