// Guest addresses typed as hex literals: PowerShell reads 0xffff800000000000 as the Int64
// -140737488355328 and 0xffffffff as the Int32 -1 (its hex literals are signed), which do not
// convert to UInt64. Address parameters take such a value as the unsigned address it spells.
using System.Collections;
using System.Collections.Generic;
using System.Management.Automation;

namespace XenLab.PowerShell;

public sealed class AddressTransformationAttribute : ArgumentTransformationAttribute
{
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        object value = inputData is PSObject p ? p.BaseObject : inputData;
        if (value is string || value is not IEnumerable list) return Reinterpret(value);
        var result = new List<object>();
        foreach (object item in list) result.Add(Reinterpret(item is PSObject ip ? ip.BaseObject : item));
        return result.ToArray();
    }

    private static object Reinterpret(object value) => value switch
    {
        long l when l < 0 => unchecked((ulong)l),
        int i when i < 0 => (ulong)unchecked((uint)i),
        _ => value,
    };
}
