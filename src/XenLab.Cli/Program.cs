using System;
using XenLab;
using XenLab.Cli;

try
{
    return LabRunner.Run(LabOptions.Parse(args), Console.Out);
}
catch (XenLabException e)
{
    Console.Error.WriteLine("xenlab: " + e.Message);
    return 2;
}
