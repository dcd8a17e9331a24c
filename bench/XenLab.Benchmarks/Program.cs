using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(XenLab.Benchmarks.TranslationBenchmarks).Assembly).Run(args);
