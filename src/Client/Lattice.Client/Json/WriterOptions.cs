using System.Text.Encodings.Web;
using System.Text.Json;

namespace Lattice.Client.Json;

internal static class WriterOptions
{
    /// <summary>
    /// Request bodies go to an API, never into HTML: text is written as UTF-8 with only JSON's own escapes, not
    /// <c>\u0022</c> and <c>\uXXXX</c> for every quote and non-ASCII letter.
    /// </summary>
    public static readonly JsonWriterOptions Relaxed = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
