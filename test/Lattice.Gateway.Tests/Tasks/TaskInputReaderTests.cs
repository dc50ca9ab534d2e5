using System.Text;
using Lattice.Gateway.Tasks;

namespace Lattice.Gateway.Tests.Tasks;

public sealed class TaskInputReaderTests
{
    [Theory]
    [InlineData("""{"model":"a"}""", 9, 3)]
    [InlineData("""{ "x":{"model":"nested"}, "model" : "top" }""", 36, 5)]
    [InlineData("""{"model":"first","model":"second"}""", 25, 8)]
    [InlineData("""{"model":"esc\"aped"}""", 9, 11)]
    [InlineData("""{"model":5}""", -1, 0)]
    public void Finds_the_raw_model_token_at_the_top_level(string json, int start, int length)
    {
        var (s, l) = Lattice.Protocol.JsonFields.FindTopLevelString(Encoding.UTF8.GetBytes(json), "model"u8);
        Assert.Equal(start, s);
        Assert.Equal(length, l);
    }
}
