/** Where the compiled validator is written: src/manifest-validator.generated.ts. */
export declare const GENERATED: URL;
/** The compiled validator's module text, as the script writes it now. */
export declare function validatorSource(): string;
