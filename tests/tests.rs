mod support;

mod harness_selftest;
