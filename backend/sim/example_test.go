package sim_test

import (
	"fmt"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/pagesize"
)

// A simulated 80 GiB GPU with 64 KiB pages: 33 pages claim two 2 MiB root
// chunks, one of them only partly used. Mapped at consecutive addresses they
// form two runs, one per chunk: two driver calls on the stock driver.
func Example() {
	lat := sim.DefaultLatency(pagesize.Size64K)
	gpu, err := sim.New(sim.Config{PageSize: pagesize.Size64K, Latency: &lat})
	if err != nil {
		panic(err)
	}
	defer gpu.Close()

	r, _ := gpu.Reserve(1 << 30)
	pages, _ := gpu.AllocPages(33)
	maps := make([]backend.Mapping, len(pages))
	for i, p := range pages {
		maps[i] = backend.Mapping{Addr: r.Addr + uint64(i)*pagesize.Size64K.Bytes(), Page: p}
	}
	if err := gpu.Map(maps); err != nil {
		panic(err)
	}
	err = gpu.Map(maps[:1])
	fmt.Println(err)

	s := gpu.Stats()
	fmt.Printf("region at %#x\n", r.Addr)
	fmt.Printf("%d pages mapped, %d root chunks (%d partial), %d MiB claimed\n",
		s.PagesMapped, s.RootChunksUsed, s.RootChunksPartial, s.DeviceBytesClaimed>>20)
	fmt.Printf("%d runs, modelled map time %v (assumed figures: %v)\n", s.Ops[sim.OpMap].Runs, s.Ops[sim.OpMap].ModelledTime, s.Latency.Assumed)
	// Output:
	// sim map: batch entry 0: page 0x100000000: already mapped at 0x7f0000000000
	// region at 0x7f0000000000
	// 33 pages mapped, 2 root chunks (1 partial), 4 MiB claimed
	// 2 runs, modelled map time 73µs (assumed figures: false)
}
