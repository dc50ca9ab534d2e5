namespace Lattice.StandIn.OpenAi;

/// <summary>"Tokens" of the stand-in are whitespace-separated words.</summary>
internal static class Words
{
    public static int Count(ReadOnlySpan<char> text)
    {
        int count = 0;
        bool inWord = false;
        foreach (char c in text)
        {
            if (char.IsWhiteSpace(c))
            {
                inWord = false;
            }
            else if (!inWord)
            {
                inWord = true;
                count++;
            }
        }

        return count;
    }

    /// <summary>
    /// End offsets (exclusive) of every word of <paramref name="text"/>. Token k of a stream is
    /// <c>text[(k == 0 ? 0 : ends[k-1]) .. ends[k]]</c>, i.e. every token after the first carries its
    /// leading whitespace; the last token also takes any trailing whitespace.
    /// </summary>
    public static int[] WordEnds(string text)
    {
        var ends = new int[Count(text)];
        int k = 0;
        for (int i = 0; i < text.Length; i++)
        {
            if (!char.IsWhiteSpace(text[i]) && (i + 1 == text.Length || char.IsWhiteSpace(text[i + 1])))
            {
                ends[k++] = i + 1;
            }
        }

        return ends;
    }
}
