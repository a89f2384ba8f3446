"""On-demand benchmarks of vmbuilder-lxc against its peers (`python3 -m bench.run`); never run by the tests."""
