module syncpool/bench/go

go 1.19
