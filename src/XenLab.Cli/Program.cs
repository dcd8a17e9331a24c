// xenlab: the headless runner. The command line (options, help, completion, --oracle) is
// XenLabCommandLine; progress is drawn only when both standard output and standard error are a terminal.
using System;
using XenLab.Cli;

bool terminal = !Console.IsOutputRedirected && !Console.IsErrorRedirected;
return await new XenLabCommandLine().InvokeAsync(args, Console.Out, Console.Error, showProgress: terminal);
