using System.Text;

namespace Lattice.Gateway.Tests.Infrastructure;

/// <summary>Splits an SSE body into its <c>data:</c> payloads, checking the framing is exactly OpenAI's.</summary>
public static class Sse
{
    public static IReadOnlyList<string> DataEvents(string body)
    {
        Assert.EndsWith("\n\n", body, StringComparison.Ordinal);
        var events = body[..^2].Split("\n\n");
        var data = new List<string>();
        foreach (var e in events)
        {
            Assert.StartsWith("data: ", e, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', e);
            data.Add(e["data: ".Length..]);
        }
        return data;
    }

    public static string Utf8(byte[] bytes) => Encoding.UTF8.GetString(bytes);
}
