using System.Globalization;
using System.Text;

namespace Lattice.Runtime.Engines.Embeddings;

/// <summary>
/// The text clean-up of BERT's uncased <c>BasicTokenizer</c> (as in Hugging Face's <c>BertTokenizer</c>), done before
/// the WordPiece tokenizer of <c>SentenceTransformers</c>, which only splits on spaces and ASCII punctuation.
/// </summary>
/// <remarks>
/// It drops control characters, turns every whitespace into a space, puts spaces around every punctuation character
/// and CJK ideograph, lowercases, and strips accents. The process runs with invariant globalization, where
/// <see cref="string.Normalize(NormalizationForm)"/> does not decompose, so accents are stripped with a table for
/// U+00C0–U+024F (Latin-1 Supplement and Latin Extended-A/B, made from Unicode's canonical decompositions) and by
/// dropping combining marks; accented letters outside it are kept as they are.
/// </remarks>
internal static class BertTextNormalizer
{
    private const int AccentTableStart = 0xC0;

    // Base letter of each code point from U+00C0 to U+024F (itself when it has no canonical decomposition).
    private static readonly string AccentTable =
        "AAAAAAÆCEEEEIIIIÐNOOOOO×ØUUUUYÞßaaaaaaæceeeeiiiiðnooooo÷øuuuuyþy"
        + "AaAaAaCcCcCcCcDdĐđEeEeEeEeEeGgGgGgGgHhĦħIiIiIiIiIıĲĳJjKkĸLlLlLlĿ"
        + "ŀŁłNnNnNnŉŊŋOoOoOoŒœRrRrRrSsSsSsSsTtTtŦŧUuUuUuUuUuUuWwYyYZzZzZzſ"
        + "ƀƁƂƃƄƅƆƇƈƉƊƋƌƍƎƏƐƑƒƓƔƕƖƗƘƙƚƛƜƝƞƟOoƢƣƤƥƦƧƨƩƪƫƬƭƮUuƱƲƳƴƵƶƷƸƹƺƻƼƽƾƿ"
        + "ǀǁǂǃǄǅǆǇǈǉǊǋǌAaIiOoUuUuUuUuUuǝAaAaÆæǤǥGgKkOoOoƷʒjǱǲǳGgǶǷNnAaÆæØø"
        + "AaAaEeEeIiIiOoOoRrRrUuUuSsTtȜȝHhȠȡȢȣȤȥAaEeOoOoOoOoYyȴȵȶȷȸȹȺȻȼȽȾȿ"
        + "ɀɁɂɃɄɅɆɇɈɉɊɋɌɍɎɏ";

    public static string Normalize(string text)
    {
        var builder = new StringBuilder(text.Length + 16);
        foreach (var rune in text.EnumerateRunes())
        {
            var value = rune.Value;
            if (value is 0 or 0xFFFD)
            {
                continue;
            }
            if (value is '\t' or '\n' or '\r' || Rune.IsWhiteSpace(rune))
            {
                builder.Append(' ');
                continue;
            }
            var category = Rune.GetUnicodeCategory(rune);
            if (category is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
                or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned)
            {
                continue;
            }
            if (category == UnicodeCategory.NonSpacingMark)
            {
                // What NFD leaves after the base letter; BERT strips it with the accent.
                continue;
            }
            if (IsPunctuation(value, category) || IsCjk(value))
            {
                builder.Append(' ').Append(rune.ToString()).Append(' ');
                continue;
            }
            var lower = Rune.ToLowerInvariant(rune);
            var lowerValue = lower.Value;
            if (lowerValue >= AccentTableStart && lowerValue < AccentTableStart + AccentTable.Length)
            {
                builder.Append(AccentTable[lowerValue - AccentTableStart]);
            }
            else
            {
                builder.Append(lower.ToString());
            }
        }
        return builder.ToString();
    }

    // BERT counts all ASCII non-alphanumeric symbols as punctuation, and every Unicode P* category.
    private static bool IsPunctuation(int value, UnicodeCategory category) =>
        value is (>= 33 and <= 47) or (>= 58 and <= 64) or (>= 91 and <= 96) or (>= 123 and <= 126)
        || category is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation
            or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
            or UnicodeCategory.OtherPunctuation;

    // The CJK Unified Ideographs blocks BERT splits into single characters (not Hangul, Hiragana or Katakana).
    private static bool IsCjk(int value) =>
        value is (>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF)
            or (>= 0x2A700 and <= 0x2B73F) or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B820 and <= 0x2CEAF)
            or (>= 0xF900 and <= 0xFAFF) or (>= 0x2F800 and <= 0x2FA1F);
}
