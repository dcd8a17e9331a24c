using System;
using XenLab;
using XenLab.Cli;

try
{
    if (OracleCommand.Handles(args)) return OracleCommand.Run(args, Console.Out);   // xenlab --oracle (OracleCommand.cs)
    return LabRunner.Run(LabOptions.Parse(args), Console.Out);
}
catch (XenLabException e)
{
    Console.Error.WriteLine("xenlab: " + e.Message);
    return 2;
}
