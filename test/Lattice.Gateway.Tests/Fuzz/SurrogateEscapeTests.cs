using System.Text;
using Lattice.Gateway.Tasks;

namespace Lattice.Gateway.Tests.Fuzz;

/// <summary>The scan for escaped UTF-16 surrogates without their pair, which no JSON string value can hold.</summary>
public sealed class SurrogateEscapeTests
{
    [Theory]
    [InlineData("""{"a":"\ud800"}""", true)]
    [InlineData("""{"a":"\uDC00"}""", true)]
    [InlineData("""{"a":"\ud83d\u0041"}""", true)]
    [InlineData("""{"a":"\ud83d"}""", true)]
    [InlineData("""{"a":"x\ud83d\ude00y"}""", false)]
    [InlineData("""{"a":"\\ud800"}""", false)]
    [InlineData("""{"a":"\\\ud800"}""", true)]
    [InlineData("""{"a":"\u00e9\u20ac"}""", false)]
    [InlineData("""{"a":"\u12"}""", false)]
    [InlineData("""{"a":"plain"}""", false)]
    public void Unpaired_surrogate_escapes_are_found(string json, bool unpaired) =>
        Assert.Equal(unpaired, TaskInputReader.HasUnpairedSurrogateEscape(Encoding.UTF8.GetBytes(json)));
}
