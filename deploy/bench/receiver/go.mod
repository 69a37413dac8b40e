module cpn.invalid/bench/receiver

go 1.22
