module playground/bench/go-echo

go 1.22
